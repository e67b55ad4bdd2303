package bodyreplay

import (
	"io"
	"sync"
	"sync/atomic"
)

// Section replays a body that can be read by position (a regular file):
// every reader handed out reads its own io.SectionReader over the same
// bytes, so nothing is copied, and any number of readers may read at once
// (hedged attempts, or a write loop still sending an earlier attempt),
// each the whole body from the start, without disturbing the others.
// owner decides when the original is closed.
//
// Call Init before use; a Section must not be copied after.
type Section struct {
	mu     sync.Mutex
	owner  // guarded by mu
	ra     io.ReaderAt
	off    int64
	n      int64
	first  sectionReader
	latest *sectionReader // guarded by mu: the latest reader handed out
}

// Init prepares s to replay the n bytes of ra from off; orig is the
// request body, closed once the round trip is over and every reader is
// closed (see owner for the exact rule).
func (s *Section) Init(orig io.Closer, ra io.ReaderAt, off, n int64) {
	s.initOwner(orig)
	s.ra, s.off, s.n = ra, off, n
	s.first.init(s)
	s.latest = &s.first
}

// First returns the body of the first attempt.
func (s *Section) First() io.ReadCloser { return &s.first }

// Next returns the body of another attempt; the readers handed out before
// it go on reading as they were. It fails, with an error wrapping
// ErrNotReplayable, once End was called.
func (s *Section) Next() (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		return nil, errOver
	}
	s.handOutLocked()
	r := new(sectionReader)
	r.init(s)
	s.latest = r
	return r, nil
}

// End records that the round trip has returned: Next fails from now on.
// The original body is closed now if no reader holds it, or else when the
// last one that does is closed.
func (s *Section) End() {
	s.mu.Lock()
	var latest *claim
	if s.latest != &s.first {
		latest = &s.latest.claim
	}
	last := s.endLocked(&s.first.claim, latest)
	s.mu.Unlock()
	if last {
		s.orig.Close()
	}
}

type sectionReader struct {
	s     *Section
	sr    io.SectionReader
	claim // guarded by s.mu
	// live is set once Read has taken its claim and cleared by Close: a
	// Read that finds it set goes to sr without locking.
	live atomic.Bool
}

func (r *sectionReader) init(s *Section) {
	r.s = s
	r.sr = *io.NewSectionReader(s.ra, s.off, s.n)
}

func (r *sectionReader) Read(p []byte) (int, error) {
	if !r.live.Load() {
		s := r.s
		s.mu.Lock()
		switch {
		case r.closed:
			s.mu.Unlock()
			return 0, ErrClosed
		case !r.started && !s.startLocked(&r.claim):
			s.mu.Unlock()
			return 0, errOver
		}
		r.live.Store(true)
		s.mu.Unlock()
	}
	// A Close from another goroutine may close the original during ReadAt
	// if this was its last claim; the read then fails, as it should.
	return r.sr.Read(p)
}

// Close drops this reader's claim on the original body; it closes the
// original if that was the last claim.
func (r *sectionReader) Close() error {
	s := r.s
	s.mu.Lock()
	r.live.Store(false)
	last := s.closeLocked(&r.claim)
	s.mu.Unlock()
	if last {
		return s.orig.Close()
	}
	return nil
}
