package bodyreplay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// replayer is what BodyCache uses of Section and Lazy.
type replayer interface {
	First() io.ReadCloser
	Next() (io.ReadCloser, error)
	End()
}

var (
	_ replayer = (*Section)(nil)
	_ replayer = (*Lazy)(nil)
)

// origin is a caller's request body: it counts its closes and can run a
// check when closed.
type origin struct {
	io.Reader
	closes  atomic.Int32
	onClose func()
}

func (o *origin) Close() error {
	if o.onClose != nil {
		o.onClose()
	}
	o.closes.Add(1)
	return nil
}

func (o *origin) closed() int { return int(o.closes.Load()) }

// chunky is a stream that returns at most max bytes per Read, a size
// drawn from rng, so that readers of a Lazy interleave in many ways. Its
// state is not guarded: two Reads at once are a data race that -race
// reports, and Lazy must never make them.
type chunky struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.rng.IntN(2) == 0 {
		return n, io.EOF // the end may come with the last bytes
	}
	return n, nil
}

// kind builds one of the two replayers over data.
type kind struct {
	name string
	// open returns a replayer of data; a Lazy keeps at most limit bytes
	// and is told the body's size if sized.
	open func(data []byte, limit int64, sized bool, rng *rand.Rand) (replayer, *origin)
	lazy bool
}

var kinds = []kind{
	{name: "section", open: func(data []byte, _ int64, _ bool, _ *rand.Rand) (replayer, *origin) {
		o := &origin{}
		s := new(Section)
		s.Init(o, bytes.NewReader(data), 0, int64(len(data)))
		return s, o
	}},
	{name: "lazy", lazy: true, open: func(data []byte, limit int64, sized bool, rng *rand.Rand) (replayer, *origin) {
		o := &origin{Reader: &chunky{data: data, rng: rng, max: 700}}
		l := new(Lazy)
		size := int64(0)
		if sized {
			size = int64(len(data))
		}
		l.Init(o, limit, size)
		return l, o
	}},
}

// payload returns n bytes that differ from one position to the next.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// readAll reads r to its end and checks it returned want.
func readAll(t testing.TB, r io.Reader, want []byte) {
	t.Helper()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d (equal prefix %d)", len(got), len(want), commonPrefix(got, want))
	}
}

// readN reads exactly n bytes of r and checks they are want[:n].
func readN(t testing.TB, r io.Reader, want []byte, n int) {
	t.Helper()
	got := make([]byte, n)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[:n]) {
		t.Fatalf("read %d bytes, differ from the body after %d", n, commonPrefix(got, want))
	}
}

func mustNext(t testing.TB, r replayer) io.ReadCloser {
	t.Helper()
	b, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantClosed checks how many times the original was closed.
func wantClosed(t testing.TB, o *origin, n int, when string) {
	t.Helper()
	if got := o.closed(); got != n {
		t.Fatalf("%s: original closed %d times, want %d", when, got, n)
	}
}

// gated is a stream whose Read blocks until the test hands it a chunk,
// and reports when a Read starts. A closed chunks channel means EOF.
type gated struct {
	entered chan struct{}
	chunks  chan []byte
}

func newGated() *gated { return &gated{make(chan struct{}), make(chan []byte)} }

func (g *gated) Read(p []byte) (int, error) {
	g.entered <- struct{}{}
	c, ok := <-g.chunks
	if !ok {
		return 0, io.EOF
	}
	return copy(p, c), nil
}

// readResult is what one Read returned.
type readResult struct {
	b   []byte
	err error
}

// readAsync starts one Read of r with a buffer of n bytes.
func readAsync(r io.Reader, n int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		p := make([]byte, n)
		k, err := r.Read(p)
		ch <- readResult{p[:k], err}
	}()
	return ch
}

// readAllAsync reads r to its end in a goroutine.
func readAllAsync(r io.Reader) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- readResult{b, err}
	}()
	return ch
}

func isNotReplayable(err error) bool { return errors.Is(err, ErrNotReplayable) }
