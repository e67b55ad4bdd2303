package bodyreplay

import (
	"fmt"
	"io"
	"sync"
)

// Lazy replays a body that can only be read as a stream. It keeps what the
// attempts read from the original, in a pooled buffer, up to a limit; a
// later attempt replays what was kept and then goes on reading the
// original where the previous attempt stopped. Once more than the limit
// has been read, the body is committed: the buffer is given back, the
// attempt reading it streams the rest unmodified, and Next fails.
//
// Only the latest reader handed out may read; earlier ones are detached
// and get ErrDetached, so an old write loop never takes bytes meant for
// the next attempt. Bytes such a loop had already asked the original for
// are kept for the new reader.
//
// Call Init before use; a Lazy must not be copied after.
type Lazy struct {
	mu   sync.Mutex
	wake sync.Cond // a read of orig ended, or a reader was replaced or closed
	owner
	body  io.Reader
	limit int64 // most bytes kept; negative: none
	hint  int   // expected size, for the first buffer; 0 if unknown

	buf     *[]byte // every byte read so far, while kept; nil before the first byte and once stopped
	n       int64   // bytes read from body
	stopped bool    // no more bytes are kept
	err     error   // the error that ended reading body (io.EOF at its end)
	reading bool    // a reader is inside body.Read, without mu
	cur     *lazyReader
	first   lazyReader
}

// Init prepares l to replay body, keeping at most limit bytes (none if
// limit is negative). size is the body's expected length, or 0 if unknown.
// body is closed once the round trip is over and every reader is closed.
// Until a byte of body is read, an attempt can be retried whatever the
// limit.
func (l *Lazy) Init(body io.ReadCloser, limit, size int64) {
	l.wake.L = &l.mu
	l.owner = owner{orig: body, refs: 2} // the round trip and the first reader
	l.body = body
	l.limit = limit
	switch {
	case limit < 0 || size > limit:
		// A body known to be larger than the limit is not worth keeping:
		// it will be sent once anyway.
		l.stopped = true
	case size > 0:
		l.hint = int(size)
	}
	l.first.l = l
	l.cur = &l.first
}

// First returns the body of the first attempt.
func (l *Lazy) First() io.ReadCloser { return &l.first }

// Next returns the body of another attempt and detaches the previous one.
// It fails, with an error wrapping ErrNotReplayable, once some byte that
// was read is no longer kept, once reading the original failed, or once
// End was called.
func (l *Lazy) Next() (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.over:
		return nil, errOver
	case l.err != nil && l.err != io.EOF:
		return nil, fmt.Errorf("%w: reading it failed: %w", ErrNotReplayable, l.err)
	case l.n > l.kept():
		return nil, errCommitted
	}
	r := &lazyReader{l: l}
	if prev := l.cur; prev != nil {
		// prev is superseded: it can read nothing more, so it stops
		// holding the original open. The layer below does not always
		// close a body it got from GetBody and then dropped (net/http's
		// HTTP/2 GOAWAY retry asks GetBody twice and closes one).
		prev.released = true
		l.refs--
	}
	l.cur = r
	l.refs++
	l.wake.Broadcast() // a detached reader may be waiting for a read of body
	return r, nil
}

// End records that the round trip has returned: nothing will be replayed,
// so buffering stops as soon as no reader needs the buffer. The original
// body is closed now if every reader already is, or else when the last
// one is.
func (l *Lazy) End() {
	l.mu.Lock()
	l.over = true
	if !l.reading && (l.cur == nil || l.cur.pos == l.n) {
		l.stopLocked()
	}
	last := l.dropLocked()
	if last {
		l.stopLocked()
	}
	l.mu.Unlock()
	if last {
		l.orig.Close()
	}
}

// kept is how many bytes the buffer holds.
func (l *Lazy) kept() int64 {
	if l.buf == nil {
		return 0
	}
	return int64(len(*l.buf))
}

// stopLocked stops buffering and gives the buffer back.
func (l *Lazy) stopLocked() {
	l.stopped = true
	if l.buf != nil {
		putBuffer(l.buf)
		l.buf = nil
	}
}

// recordLocked accounts for b and err, just read from body.
func (l *Lazy) recordLocked(b []byte, err error) {
	if len(b) > 0 {
		if !l.stopped {
			if l.n+int64(len(b)) > l.limit {
				l.stopLocked() // committed
			} else {
				l.keepLocked(b)
			}
		}
		l.n += int64(len(b))
	}
	if err != nil {
		l.err = err
	}
}

// keepLocked appends b to the buffer, which has room to stay within limit.
func (l *Lazy) keepLocked(b []byte) {
	need := int(l.kept()) + len(b)
	switch {
	case l.buf == nil:
		l.buf = getBuffer(max(need, l.hint))
	case need > cap(*l.buf):
		nb := getBuffer(int(min(int64(max(need, 2*cap(*l.buf))), l.limit)))
		*nb = append(*nb, *l.buf...)
		putBuffer(l.buf)
		l.buf = nb
	}
	*l.buf = append(*l.buf, b...)
}

// lazyReader is one attempt's view of a Lazy body.
type lazyReader struct {
	l        *Lazy
	pos      int64 // bytes this reader has returned
	closed   bool  // guarded by l.mu
	released bool  // superseded by Next, which dropped its claim; guarded by l.mu
}

func (r *lazyReader) Read(p []byte) (int, error) {
	l := r.l
	l.mu.Lock()
	for {
		switch {
		case r.closed:
			l.mu.Unlock()
			return 0, ErrClosed
		case l.cur != r:
			l.mu.Unlock()
			return 0, ErrDetached
		case r.pos < l.kept():
			k := copy(p, (*l.buf)[r.pos:])
			r.pos += int64(k)
			l.mu.Unlock()
			return k, nil
		case r.pos < l.n:
			// A detached reader's read went past the limit: the bytes
			// this reader still needs were never kept.
			l.mu.Unlock()
			return 0, errCommitted
		case l.err != nil:
			err := l.err
			l.mu.Unlock()
			return 0, err
		case len(p) == 0:
			l.mu.Unlock()
			return 0, nil
		}
		if !l.reading {
			break
		}
		// A detached reader is inside body.Read; what it gets will be
		// kept for this one.
		l.wake.Wait()
	}
	if l.over && !l.stopped {
		l.stopLocked() // nothing will be replayed
	}
	l.reading = true
	l.mu.Unlock()

	// body is read without the lock: it may block for as long as its
	// writer likes, and Close and Next must not wait for it. It reads into
	// p, never into the buffer, which may be given back meanwhile.
	k, err := l.body.Read(p)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.reading = false
	l.wake.Broadcast()
	l.recordLocked(p[:k], err)
	switch {
	case r.closed:
		return 0, ErrClosed
	case l.cur != r:
		return 0, ErrDetached
	}
	r.pos += int64(k)
	return k, err
}

// Close drops this reader's claim on the original body; it closes the
// original only if it is the last claim.
func (r *lazyReader) Close() error {
	l := r.l
	l.mu.Lock()
	if r.closed {
		l.mu.Unlock()
		return nil
	}
	r.closed = true
	if l.cur == r {
		l.cur = nil
	}
	l.wake.Broadcast()
	if r.released {
		l.mu.Unlock()
		return nil
	}
	last := l.dropLocked()
	if last {
		l.stopLocked()
	}
	l.mu.Unlock()
	if last {
		return l.orig.Close()
	}
	return nil
}
