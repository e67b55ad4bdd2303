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
	// ErrClosed is what a reader returns after it was closed.
	ErrClosed = errors.New("saferetry: read from a closed request body")

	// Fixed causes, wrapped once here so that reporting them allocates nothing.
	errOver      = fmt.Errorf("%w: the round trip is over", ErrNotReplayable)
	errCommitted = fmt.Errorf("%w: more of it was sent than could be kept", ErrNotReplayable)
)

// owner decides when the original body is closed. Every reader handed out
// (by First or Next) may be read at the same time as the others, by an
// attempt of its own, for as long as the layer below likes, even after the
// round trip is over: net/http's HTTP/1 write loop goes on sending a body
// after the response was handed back when the server answered early, and
// its HTTP/2 transport starts sending the body of a stream whose 2xx
// answer came back first (full duplex, Expect: 100-continue). Closing the
// original under such a reader fails its write, which closes the
// connection and cuts the response being read from it.
//
// So the original is held open by claims: one for the round trip until
// End, and one per reader that holds it. A reader is live while it holds a
// claim; see held. Invariants, all under the embedding type's mutex:
//
//   - claims == (1 if !over) + the number of live readers, until done.
//     done is set exactly when claims reaches zero, by one caller, which
//     closes orig after unlocking: orig is closed exactly once, and never
//     while a reader that has been read and not closed exists.
//   - Until End, every reader handed out and not closed is live: any of
//     them may be the next attempt or hedge to start sending.
//   - A reader that has been read (Read called once) is live until closed,
//     End or not.
//   - At End, a reader never read nor closed stops being live, except the
//     first one and the latest one handed out (spared), if they could
//     still read the whole body. The layer below closes every body it
//     sends or gives up on; the one exception is net/http's HTTP/2 retry
//     on GOAWAY, which asks GetBody for a body, drops it unread when the
//     connection is gone, and then asks GetBody again (http.Transport's
//     rewind) for the body it sends: the dropped one is never the latest,
//     nor the first, which the retry layer passed down itself. Without
//     this rule, such a body would keep the original open forever.
//   - A reader that lost its claim at End and is read afterwards takes a
//     claim again if orig is still open (not done); otherwise its Read
//     fails with errOver, and it never reads a closed original or a
//     buffer given back to the pool.
//   - No reader is handed out after End (Next fails), so over, the set of
//     readers and spared do not change once done can be reached.
//
// The one inexact case: with hedges, the reader of an attempt that is
// neither the first nor the latest, whose answer came back before its body
// was first read, may find the original closed when it starts reading, if
// every other reader was closed by then; its body then fails, with
// ErrNotReplayable. It takes a server answering 2xx before reading the
// body, and a write loop that starts only after the round trip returned
// and the other attempts were closed.
//
// The counts are int32 so that owner takes no more room than a single
// count did: it is allocated with every request that has a body.
type owner struct {
	orig   io.Closer
	claims int32 // the round trip until End, plus one per live reader
	open   int32 // readers handed out and not closed
	fresh  int32 // readers handed out, neither read nor closed
	over   bool  // End was called: no further reader is handed out
	done   bool  // claims reached zero: orig is (being) closed
}

// claim is one reader's part in owner's accounting, guarded by the
// embedding type's mutex.
type claim struct {
	started bool // Read was called, and the reader held or took a claim
	closed  bool
	spared  bool // fresh at End, but kept its claim (first or latest)
}

// initOwner starts the accounting for orig with the first reader handed
// out: the round trip and that reader hold claims.
func (o *owner) initOwner(orig io.Closer) {
	*o = owner{orig: orig, claims: 2, open: 1, fresh: 1}
}

// held reports whether c holds a claim on the original.
func (o *owner) held(c *claim) bool {
	return !c.closed && (c.started || !o.over || c.spared)
}

// handOutLocked accounts for a new reader; the caller checked !o.over.
func (o *owner) handOutLocked() {
	o.claims++
	o.open++
	o.fresh++
}

// startLocked records the first Read of c, which is not closed. It
// reports false if c holds no claim and none can be taken: the original
// is closed.
func (o *owner) startLocked(c *claim) bool {
	if !o.held(c) {
		if o.done {
			return false
		}
		o.claims++ // lost at End, taken again
	}
	c.started = true
	o.fresh--
	return true
}

// closeLocked records that c was closed and reports whether the caller,
// having unlocked, must close orig.
func (o *owner) closeLocked(c *claim) bool {
	if c.closed {
		return false
	}
	held := o.held(c)
	c.closed = true
	o.open--
	if !c.started {
		o.fresh--
	}
	return held && o.dropLocked()
}

// endLocked records that the round trip is over. first and latest, if not
// nil, are spared if they were never read nor closed; every other such
// reader loses its claim. It reports whether the caller, having unlocked,
// must close orig.
func (o *owner) endLocked(first, latest *claim) bool {
	o.over = true
	lost := o.fresh
	for _, c := range [2]*claim{first, latest} {
		if c != nil && !c.started && !c.closed && !c.spared {
			c.spared = true
			lost--
		}
	}
	o.claims -= lost
	return o.dropLocked()
}

// dropLocked removes one claim and reports whether the caller, having
// unlocked, must close orig.
func (o *owner) dropLocked() bool {
	o.claims--
	if o.claims > 0 || o.done {
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
