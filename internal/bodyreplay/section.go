package bodyreplay

import (
	"io"
	"sync"
	"sync/atomic"
)

// Section replays a body that can be read by position (a regular file):
// every attempt reads its own io.SectionReader over the same bytes, so
// nothing is copied and a previous attempt's write loop, still reading,
// does not disturb the next one. Call Init before use; it must not be
// copied after.
type Section struct {
	mu    sync.Mutex
	owner // guarded by mu
	ra    io.ReaderAt
	off   int64
	n     int64
	first sectionReader
	cur   *sectionReader // the latest reader handed out, until it is closed
}

// Init prepares s to replay the n bytes of ra from off; orig is the
// request body, closed once the round trip is over and every reader is
// closed.
func (s *Section) Init(orig io.Closer, ra io.ReaderAt, off, n int64) {
	s.owner = owner{orig: orig, refs: 2} // the round trip and the first reader
	s.ra, s.off, s.n = ra, off, n
	s.first.init(s)
	s.cur = &s.first
}

// First returns the body of the first attempt.
func (s *Section) First() io.ReadCloser { return &s.first }

// Next returns the body of another attempt. It fails, with an error
// wrapping ErrNotReplayable, once End was called.
func (s *Section) Next() (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		return nil, errOver
	}
	if prev := s.cur; prev != nil {
		// prev is superseded and stops holding the original open: the
		// layer below does not always close a body it got from GetBody
		// and then dropped (net/http's HTTP/2 GOAWAY retry).
		prev.released = true
		s.refs--
	}
	s.refs++
	r := new(sectionReader)
	r.init(s)
	s.cur = r
	return r, nil
}

// End records that the round trip has returned. The original body is
// closed now if every reader already is, or else when the last one is.
func (s *Section) End() {
	s.mu.Lock()
	s.over = true
	last := s.dropLocked()
	s.mu.Unlock()
	if last {
		s.orig.Close()
	}
}

type sectionReader struct {
	s        *Section
	sr       io.SectionReader
	closed   atomic.Bool
	released bool // superseded by Next, which dropped its claim; guarded by s.mu
}

func (r *sectionReader) init(s *Section) {
	r.s = s
	r.sr = *io.NewSectionReader(s.ra, s.off, s.n)
}

func (r *sectionReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	return r.sr.Read(p)
}

// Close drops this reader's claim on the original body; it closes the
// original only if it is the last claim.
func (r *sectionReader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	s := r.s
	s.mu.Lock()
	if s.cur == r {
		s.cur = nil
	}
	if r.released {
		s.mu.Unlock()
		return nil
	}
	last := s.dropLocked()
	s.mu.Unlock()
	if last {
		return s.orig.Close()
	}
	return nil
}
