package bodyreplay

import (
	"fmt"
	"io"
	"sync"
)

// Lazy replays a body that can only be read as a stream. Its readers may
// read at the same time (hedged attempts, or a write loop still sending an
// earlier attempt), each the whole body from the start: they share one
// buffer, in which Lazy keeps what was read from the original, up to a
// limit. A reader behind the others copies from the buffer; the reader
// that is furthest ahead reads the original, and what it gets is appended
// to the buffer for the others. Once more than the limit has been read,
// the body is committed: the buffer is given back, the reader furthest
// ahead streams the rest unmodified, the readers behind it fail and Next
// fails.
//
// Invariants, all under mu (owner's, for the claims, are in owner's doc):
//
//   - buf holds exactly the bytes [0, len(*buf)) of the original; while
//     bytes are kept, that is all n bytes read so far. Once stopped, buf is
//     nil for good, so no reader copies from a buffer given back to the
//     pool (and maybe to another request). Every copy from buf is made
//     under mu.
//   - At most one Read of the original is in progress (reading), by a
//     reader that was at position n when it started it: its bytes are
//     recorded (kept, and n advanced) before any reader can go past n.
//     The original is read into the reader's own p, never into buf, and
//     without mu, so Close, Next, End and readers behind need not wait for
//     it.
//   - A reader waits (wake.Wait) only while it is at n and the original is
//     being read; whoever ends that read broadcasts, and so does Close, so
//     a waiter wakes once there is something to read, an error, or it was
//     closed. Nobody polls.
//   - Leadership is not held: a reader that stops reading the original
//     (its attempt was cancelled) leaves it at n for the next reader to
//     reach it, which reads on from there, keeping those bytes for the
//     rest. A reader closed while it is inside the original's Read gets
//     ErrClosed, and its bytes are still kept for the others.
//   - A reader that needs bytes no longer kept (the body was committed)
//     fails with errCommitted: it never sends a body with a hole in it.
//   - Bytes stop being kept: at the commit; after End, when the reader
//     about to read the original is the only one not closed (nothing will
//     replay them); and when the original is closed (owner.done).
//
// Call Init before use; a Lazy must not be copied after.
type Lazy struct {
	mu   sync.Mutex
	wake sync.Cond // a read of the original ended, or a reader was closed
	owner
	body  io.Reader
	limit int64 // most bytes kept; negative: none
	hint  int   // expected size, for the first buffer; 0 if unknown

	buf       *[]byte // the bytes kept; nil before the first byte and once stopped
	n         int64   // bytes read from body
	err       error   // the error that ended reading body (io.EOF at its end)
	stopped   bool    // no more bytes are kept
	committed bool    // stopped because more than limit bytes were read
	reading   bool    // a reader is inside body.Read, without mu
	latest    *lazyReader
	first     lazyReader
}

// Init prepares l to replay body, keeping at most limit bytes (none if
// limit is negative). size is the body's expected length, or 0 if unknown.
// body is closed once the round trip is over and every reader is closed
// (see owner for the exact rule). Until a byte of body is read, an attempt
// can be retried whatever the limit.
func (l *Lazy) Init(body io.ReadCloser, limit, size int64) {
	l.wake.L = &l.mu
	l.initOwner(body)
	l.body = body
	l.limit = limit
	switch {
	case limit < 0 || size > limit:
		// A body known to be larger than the limit is not worth keeping:
		// it will be sent once anyway.
		l.stopped = true
		l.committed = true
	case size > 0:
		l.hint = int(size)
	}
	l.first.l = l
	l.latest = &l.first
}

// First returns the body of the first attempt.
func (l *Lazy) First() io.ReadCloser { return &l.first }

// Next returns the body of another attempt; the readers handed out before
// it go on reading as they were. It fails, with an error wrapping
// ErrNotReplayable, once some byte that was read is no longer kept, once
// reading the original failed, or once End was called.
func (l *Lazy) Next() (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.replayableLocked(); err != nil {
		return nil, err
	}
	l.handOutLocked()
	r := &lazyReader{l: l}
	l.latest = r
	return r, nil
}

// replayableLocked returns nil if a new reader could read the whole body,
// or why not.
func (l *Lazy) replayableLocked() error {
	switch {
	case l.over:
		return errOver
	case l.err != nil && l.err != io.EOF:
		return fmt.Errorf("%w: reading it failed: %w", ErrNotReplayable, l.err)
	case l.n > l.kept():
		return errCommitted
	}
	return nil
}

// End records that the round trip has returned: Next fails from now on.
// The original body is closed now if no reader holds it, or else when the
// last one that does is closed.
func (l *Lazy) End() {
	l.mu.Lock()
	var first, latest *claim
	// A reader never read is spared only if it could still read the
	// whole body; otherwise it would only fail.
	if l.n == l.kept() && (l.err == nil || l.err == io.EOF) {
		first = &l.first.claim
		if l.latest != &l.first {
			latest = &l.latest.claim
		}
	}
	last := l.endLocked(first, latest)
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
				l.committed = true
				l.stopLocked()
			} else {
				l.keepLocked(b)
			}
		}
		l.n += int64(len(b))
	}
	if err != nil && l.err == nil {
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
	l     *Lazy
	pos   int64 // bytes this reader has returned
	claim       // guarded by l.mu
}

func (r *lazyReader) Read(p []byte) (int, error) {
	l := r.l
	l.mu.Lock()
	if !r.started && !r.closed && !l.startLocked(&r.claim) {
		l.mu.Unlock()
		return 0, errOver
	}
	for {
		switch {
		case r.closed:
			l.mu.Unlock()
			return 0, ErrClosed
		case r.pos < l.kept():
			k := copy(p, (*l.buf)[r.pos:])
			r.pos += int64(k)
			l.mu.Unlock()
			return k, nil
		case r.pos < l.n:
			// Bytes this reader still needs were read by another one
			// and not kept.
			l.mu.Unlock()
			if l.committed {
				return 0, errCommitted
			}
			return 0, errOver
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
		// Another reader is inside body.Read; what it gets will be kept
		// for this one, unless it commits the body.
		l.wake.Wait()
	}
	if l.over && l.open == 1 && !l.stopped {
		l.stopLocked() // no other reader is left to replay these bytes
	}
	l.reading = true
	l.mu.Unlock()

	// body is read without the lock: it may block for as long as its
	// writer likes, and Close, Next and the readers behind must not wait
	// for it. It reads into p, never into the buffer, which may be given
	// back meanwhile.
	k, err := l.body.Read(p)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.reading = false
	l.recordLocked(p[:k], err)
	l.wake.Broadcast()
	if r.closed {
		return 0, ErrClosed
	}
	r.pos += int64(k)
	return k, err
}

// Close drops this reader's claim on the original body; it closes the
// original if that was the last claim, which also ends a Read of it stuck
// waiting for its writer.
func (r *lazyReader) Close() error {
	l := r.l
	l.mu.Lock()
	last := l.closeLocked(&r.claim)
	if last {
		l.stopLocked()
	}
	l.wake.Broadcast() // this reader may be waiting in Read
	l.mu.Unlock()
	if last {
		return l.orig.Close()
	}
	return nil
}
