package bodyreplay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// A script of Next, Read, Close and End calls, in any order, is run on one
// goroutine against a model of what the package promises: what each call
// returns, and when the original is closed. Runs on one goroutine cannot
// block (no Read of the original is ever in progress when another reader
// calls Read), so every interleaving of whole calls is reachable, and the
// fuzzer explores them.

// modelReader is the model's view of one reader.
type modelReader struct {
	rc      io.ReadCloser
	pos     int
	started bool // Read was called and could take a claim
	closed  bool
	spared  bool // first or latest, never read, at End, of a body still whole
}

type model struct {
	t     *testing.T
	lazy  bool
	data  []byte
	limit int64
	sized bool
	rp    replayer
	o     *origin
	rs    []*modelReader
	over  bool
	n     int // Lazy: bytes read from the original
	trace []string
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s\nafter: %v", fmt.Sprintf(format, args...), m.trace)
}

// notKept reports whether some byte read from the original is not kept
// (Lazy): the body is committed, or was never kept.
func (m *model) notKept() bool {
	if !m.lazy || m.n == 0 {
		return false
	}
	return int64(m.n) > m.limit || (m.sized && int64(len(m.data)) > m.limit)
}

func (m *model) live(r *modelReader) bool {
	return !r.closed && (r.started || !m.over || r.spared)
}

// checkClosed checks the original is closed exactly when the round trip
// is over and no reader holds it.
func (m *model) checkClosed() {
	m.t.Helper()
	want := 0
	if m.over {
		want = 1
		for _, r := range m.rs {
			if m.live(r) {
				want = 0
			}
		}
	}
	if got := m.o.closed(); got != want {
		m.fatalf("original closed %d times, want %d", got, want)
	}
}

func (m *model) next() {
	m.t.Helper()
	m.trace = append(m.trace, "Next")
	rc, err := m.rp.Next()
	wantErr := m.over || m.notKept()
	switch {
	case wantErr && !isNotReplayable(err):
		m.fatalf("Next: %v, want ErrNotReplayable", err)
	case !wantErr && err != nil:
		m.fatalf("Next: %v", err)
	case err == nil:
		m.rs = append(m.rs, &modelReader{rc: rc})
	}
}

func (m *model) read(i, size int) {
	m.t.Helper()
	r := m.rs[i]
	m.trace = append(m.trace, fmt.Sprintf("Read(%d, %d)@%d", i, size, r.pos))
	p := make([]byte, size)
	k, err := r.rc.Read(p)
	got := p[:k]
	wantFail := func(what string, ok bool) {
		m.t.Helper()
		if k != 0 || !ok {
			m.fatalf("reader %d: %d bytes, %v; want %s", i, k, err, what)
		}
	}
	if r.closed {
		wantFail("ErrClosed", errors.Is(err, ErrClosed))
		return
	}
	if !r.started {
		if m.over && !r.spared && m.o.closed() == 1 {
			wantFail("ErrNotReplayable: the original is closed", isNotReplayable(err))
			return
		}
		r.started = true
	}
	if m.lazy && r.pos < m.n && m.notKept() {
		wantFail("ErrNotReplayable: committed", isNotReplayable(err))
		return
	}
	fromOriginal := m.lazy && r.pos == m.n
	switch {
	case err != nil && err != io.EOF:
		m.fatalf("reader %d: %d bytes, %v", i, k, err)
	case !bytes.Equal(got, m.data[r.pos:min(r.pos+k, len(m.data))]) || r.pos+k > len(m.data):
		m.fatalf("reader %d: %d bytes that differ from the body at %d", i, k, r.pos)
	case err == io.EOF && r.pos+k != len(m.data):
		m.fatalf("reader %d: EOF at %d of %d", i, r.pos+k, len(m.data))
	case k == 0 && err == nil:
		m.fatalf("reader %d: no progress", i)
	case m.lazy && !fromOriginal && r.pos+k > m.n:
		m.fatalf("reader %d behind went past the bytes read", i)
	}
	r.pos += k
	if fromOriginal {
		m.n = r.pos
	}
}

func (m *model) close(i int) {
	m.trace = append(m.trace, fmt.Sprintf("Close(%d)", i))
	m.rs[i].rc.Close()
	m.rs[i].closed = true
}

func (m *model) end() {
	m.trace = append(m.trace, "End")
	// A never read first or latest reader is spared if it could still
	// read the whole body.
	if !m.notKept() {
		for _, r := range []*modelReader{m.rs[0], m.rs[len(m.rs)-1]} {
			r.spared = !r.started && !r.closed
		}
	}
	m.over = true
	m.rp.End()
}

// runScript decodes script into a run and checks it against the model.
func runScript(t *testing.T, script []byte) {
	if len(script) < 4 {
		return
	}
	k := kinds[script[0]%2]
	size := int(script[1]) * 23
	limits := []int64{-1, 0, 100, int64(size / 2), int64(size), 1 << 20}
	limit := limits[int(script[2])%len(limits)]
	sized := script[3]&1 == 1
	data := payload(size)
	rp, o := k.open(data, limit, sized, rand.New(rand.NewPCG(uint64(script[3]), 7)))
	m := &model{t: t, lazy: k.lazy, data: data, limit: limit, sized: sized, rp: rp, o: o}
	m.rs = []*modelReader{{rc: rp.First()}}
	ops := script[4:]
	for j := 0; j+1 < len(ops); j += 2 {
		op, arg := ops[j], int(ops[j+1])
		switch op % 6 {
		case 0:
			m.next()
		case 1, 2, 3:
			m.read(arg%len(m.rs), 1+arg*13%700)
		case 4:
			m.close(arg % len(m.rs))
		case 5:
			if !m.over {
				m.end()
			}
		}
		m.checkClosed()
	}
	// The round trip ends and the layer below closes what it holds.
	if !m.over {
		m.end()
		m.checkClosed()
	}
	for i := range m.rs {
		m.close(i)
		m.checkClosed()
	}
	if got := o.closed(); got != 1 {
		m.fatalf("original closed %d times at the end, want 1", got)
	}
}

func TestRandomScripts(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	for range 3000 {
		script := make([]byte, 4+2*rng.IntN(40))
		for i := range script {
			script[i] = byte(rng.Uint32())
		}
		runScript(t, script)
	}
}

func FuzzReplayScript(f *testing.F) {
	// Lazy: read, replay, drop, replay, End (the GOAWAY pattern).
	f.Add([]byte{1, 40, 5, 0, 1, 255, 4, 0, 0, 0, 0, 0, 1, 2, 4, 2, 5, 0})
	// Section: two readers, End between their reads.
	f.Add([]byte{0, 40, 5, 0, 0, 0, 1, 3, 5, 0, 1, 1, 4, 0, 1, 1})
	// Lazy over its limit, readers behind.
	f.Add([]byte{1, 200, 2, 1, 0, 0, 1, 2, 1, 40, 1, 40, 1, 3, 0, 0, 5, 0})
	f.Fuzz(runScript)
}
