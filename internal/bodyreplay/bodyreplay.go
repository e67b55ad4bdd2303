// Package bodyreplay hands one request body to every attempt of a retried
// HTTP request, each attempt reading it from the start.
package bodyreplay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
)

// ErrNotReplayable is the root of every error saying a body cannot be sent
// again. The saferetry package exports it as ErrBodyNotReplayable.
var ErrNotReplayable = errors.New("saferetry: request body cannot be replayed")

var (
	// ErrDetached is what a reader returns once a later attempt's reader
	// has replaced it: an old write loop must not take bytes meant for the
	// new attempt.
	ErrDetached = errors.New("saferetry: request body read by a superseded attempt")

	// ErrClosed is what a reader returns after it was closed.
	ErrClosed = errors.New("saferetry: read from a closed request body")

	// Fixed causes, wrapped once here so that reporting them allocates nothing.
	errOver      = fmt.Errorf("%w: the round trip is over", ErrNotReplayable)
	errCommitted = fmt.Errorf("%w: more of it was sent than could be kept", ErrNotReplayable)
)

// owner counts who still needs a body: the round trip in flight and each
// reader handed out. The original body is closed when the count reaches
// zero, exactly once. Its fields are guarded by the embedding type's mutex.
type owner struct {
	orig io.Closer
	refs int  // 1 for the round trip until End, plus 1 per open reader
	over bool // End was called: no further replay
	done bool // the count reached zero: orig is (being) closed
}

// dropLocked removes one reference and reports whether the caller, having
// unlocked, must close orig.
func (o *owner) dropLocked() bool {
	o.refs--
	if o.refs > 0 || o.done {
		return false
	}
	o.done = true
	return true
}

// sizedReaderAt is a reader whose bytes can be read at any position, with
// a known size and position: bytes.Reader, strings.Reader, io.SectionReader.
type sizedReaderAt interface {
	io.ReaderAt
	io.Seeker
	Size() int64
}

// Sized reports whether body can be read by position, and if so from which
// offset and how many bytes remain: a regular *os.File, or a reader with
// ReadAt, Seek and Size, possibly wrapped by io.NopCloser. It does not
// move body's position.
func Sized(body io.Reader) (ra io.ReaderAt, off, n int64, ok bool) {
	switch r := unwrapNopCloser(body).(type) {
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil, 0, 0, false
		}
		off, err := r.Seek(0, io.SeekCurrent)
		// A size of zero is not trusted: files in /proc report it and
		// still have content. Such a file is read as a stream.
		if err != nil || fi.Size() <= off {
			return nil, 0, 0, false
		}
		return r, off, fi.Size() - off, true
	case sizedReaderAt:
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil || r.Size() < off {
			return nil, 0, 0, false
		}
		return r, off, r.Size() - off, true
	}
	return nil, 0, 0, false
}

// The types io.NopCloser returns, recognised as net/http does.
var (
	nopCloserType         = reflect.TypeOf(io.NopCloser(nil))
	nopCloserWriterToType = reflect.TypeOf(io.NopCloser(struct {
		io.Reader
		io.WriterTo
	}{}))
)

// unwrapNopCloser returns the reader inside an io.NopCloser, or r itself.
func unwrapNopCloser(r io.Reader) io.Reader {
	switch reflect.TypeOf(r) {
	case nopCloserType, nopCloserWriterToType:
		if inner, ok := reflect.ValueOf(r).Field(0).Interface().(io.Reader); ok && inner != nil {
			return inner
		}
	}
	return r
}
