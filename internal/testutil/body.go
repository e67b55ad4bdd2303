package testutil

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// CloseCounter counts Close calls and signals the first. Embedded in a
// body type, it gives the body a counted Close that does nothing else.
// The zero value is ready to use; it is safe for concurrent use and must
// not be copied after first use.
type CloseCounter struct {
	n    atomic.Int32
	init sync.Once
	done chan struct{}
}

func (c *CloseCounter) doneCh() chan struct{} {
	c.init.Do(func() { c.done = make(chan struct{}) })
	return c.done
}

// Close counts the call and returns nil.
func (c *CloseCounter) Close() error {
	if c.n.Add(1) == 1 {
		close(c.doneCh())
	}
	return nil
}

// Closes returns how often Close was called.
func (c *CloseCounter) Closes() int { return int(c.n.Load()) }

// Closed returns a channel closed by the first Close.
func (c *CloseCounter) Closed() <-chan struct{} { return c.doneCh() }

// WaitClosed waits for the first Close (net/http may close a request body
// after RoundTrip returned), failing the test after SignalTimeout.
func (c *CloseCounter) WaitClosed(t testing.TB) {
	t.Helper()
	WaitSignal(t, c.Closed(), "the body to be closed")
}

// TrackedBody is a body that records how much of it was read, whether it
// was read to io.EOF, and how often it was closed: the way to prove that a
// discarded response was drained and closed, or that a caller's request
// body was closed exactly once. It offers only Read and Close (no ReaderAt,
// Seeker or WriterTo), so a transport sees an opaque stream. Safe for
// concurrent use.
type TrackedBody struct {
	CloseCounter
	r    io.Reader
	read atomic.Int64
	eof  atomic.Bool
}

// NewTrackedBody returns a TrackedBody reading r. Its Close also closes r
// when r is an io.Closer.
func NewTrackedBody(r io.Reader) *TrackedBody { return &TrackedBody{r: r} }

// Read reads from the underlying reader and records what it saw.
func (b *TrackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Close counts the call and closes the underlying reader if it can be.
func (b *TrackedBody) Close() error {
	b.CloseCounter.Close()
	if c, ok := b.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// BytesRead returns how many bytes were read.
func (b *TrackedBody) BytesRead() int64 { return b.read.Load() }

// ReadToEOF reports whether a Read returned io.EOF.
func (b *TrackedBody) ReadToEOF() bool { return b.eof.Load() }
