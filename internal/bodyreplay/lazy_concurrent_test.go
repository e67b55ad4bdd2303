package bodyreplay

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/synctest"
)

// Tests of Lazy's sharing of one stream between readers read at once.

// newLazy returns a Lazy over body keeping at most limit bytes.
func newLazy(body io.Reader, limit int64) (*Lazy, *origin) {
	o := &origin{Reader: body}
	l := new(Lazy)
	l.Init(o, limit, 0)
	return l, o
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// The reader ahead stops reading (its attempt was cancelled mid-upload)
// and another one goes on: it replays what was kept and reads the rest of
// the original from where the first stopped, so the original is read once.
func TestLazyLeaderStopsAnotherGoesOn(t *testing.T) {
	data := payload(20_000)
	for _, close := range []bool{false, true} {
		t.Run(map[bool]string{false: "leader left open", true: "leader closed"}[close], func(t *testing.T) {
			cr := &countingReader{r: bytes.NewReader(data)}
			l, o := newLazy(cr, 1<<20)
			leader := l.First()
			other := mustNext(t, l)
			readN(t, other, data, 2000)
			readN(t, leader, data, 7000) // ahead: reads the original
			if close {
				leader.Close()
			}
			readAll(t, other, data[2000:])
			if cr.n != int64(len(data)) {
				t.Errorf("original read for %d bytes, want %d: once", cr.n, len(data))
			}
			if !close {
				readAll(t, leader, data[7000:]) // from what the other one kept
				leader.Close()
			}
			other.Close()
			l.End()
			wantClosed(t, o, 1, "all closed after End")
		})
	}
}

// The reader ahead is closed while it is inside the original's Read (its
// attempt was cancelled while the caller's stream had nothing to give).
// The reader waiting for those bytes is not stuck: it gets them when the
// Read returns and reads on from the original itself.
func TestLazyLeaderClosedInsideRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		l, o := newLazy(g, 1<<20)
		leader := l.First()
		other := mustNext(t, l)

		led := readAsync(leader, 100)
		<-g.entered
		waited := readAllAsync(other)
		synctest.Wait() // other waits for the leader's Read
		leader.Close()
		wantClosed(t, o, 0, "leader closed, another reader open")
		g.chunks <- []byte("hello")
		if r := <-led; !errors.Is(r.err, ErrClosed) {
			t.Errorf("closed leader's Read: %q, %v; want ErrClosed", r.b, r.err)
		}
		<-g.entered // other reads the original now
		g.chunks <- []byte(", world")
		<-g.entered
		close(g.chunks)
		if r := <-waited; r.err != nil || string(r.b) != "hello, world" {
			t.Errorf("other reader: %q, %v", r.b, r.err)
		}
		other.Close()
		l.End()
		wantClosed(t, o, 1, "all closed after End")
	})
}

// A reader waiting for the one inside the original's Read, closed
// meanwhile, returns at once with ErrClosed; the one reading is not
// disturbed.
func TestLazyWaitingReaderClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		l, o := newLazy(g, 1<<20)
		leader := l.First()
		waiter := mustNext(t, l)

		led := readAsync(leader, 100)
		<-g.entered
		waited := readAsync(waiter, 100)
		synctest.Wait() // waiter is waiting
		waiter.Close()
		if r := <-waited; !errors.Is(r.err, ErrClosed) || len(r.b) != 0 {
			t.Errorf("closed waiter: %q, %v; want ErrClosed", r.b, r.err)
		}
		g.chunks <- []byte("abc")
		if r := <-led; r.err != nil || string(r.b) != "abc" {
			t.Errorf("leader: %q, %v", r.b, r.err)
		}
		led = readAsync(leader, 100)
		<-g.entered
		close(g.chunks)
		if r := <-led; r.err != io.EOF {
			t.Errorf("leader at the end: %q, %v; want EOF", r.b, r.err)
		}
		leader.Close()
		l.End()
		wantClosed(t, o, 1, "all closed after End")
	})
}

// Two readers wanting the same bytes of a stream: one is inside the
// caller's Read, the other waits for it, and both get every byte.
func TestLazySharesBytesOfAConcurrentRead(t *testing.T) {
	g := newGated()
	l, o := newLazy(g, 1<<20)
	r1 := l.First()
	first := readAllAsync(r1)
	<-g.entered
	r2 := mustNext(t, l)
	second := readAllAsync(r2)
	g.chunks <- []byte("hello")
	<-g.entered
	g.chunks <- []byte(", world")
	<-g.entered
	close(g.chunks)
	if got := <-first; string(got.b) != "hello, world" {
		t.Errorf("first reader read %q", got.b)
	}
	if got := <-second; string(got.b) != "hello, world" {
		t.Errorf("second reader read %q", got.b)
	}
	r1.Close()
	r2.Close()
	l.End()
	wantClosed(t, o, 1, "after End")
}

// Over the limit the body is committed: the reader ahead sends it whole,
// unmodified; the readers behind fail cleanly, having returned only bytes
// of the body, and Next fails.
func TestLazyCommittedWithConcurrentReaders(t *testing.T) {
	const limit = 1000
	data := payload(3000)
	t.Run("reader behind", func(t *testing.T) {
		l, o := newLazy(bytes.NewReader(data), limit)
		ahead := l.First()
		behind := mustNext(t, l)
		readN(t, behind, data, 400)
		readAll(t, ahead, data)
		if n, err := behind.Read(make([]byte, 100)); n != 0 || !errors.Is(err, errCommitted) {
			t.Errorf("reader behind: %d bytes, %v; want errCommitted", n, err)
		}
		if _, err := l.Next(); !errors.Is(err, errCommitted) {
			t.Errorf("Next: %v, want errCommitted", err)
		}
		ahead.Close()
		behind.Close()
		l.End()
		wantClosed(t, o, 1, "all closed after End")
	})
	t.Run("reader never read", func(t *testing.T) {
		l, o := newLazy(bytes.NewReader(data), limit)
		ahead := l.First()
		fresh := mustNext(t, l)
		readAll(t, ahead, data)
		ahead.Close()
		l.End()
		// fresh could only fail: it is not spared, and the original is
		// closed although it was never closed itself.
		wantClosed(t, o, 1, "after End")
		if n, err := fresh.Read(make([]byte, 100)); n != 0 || !isNotReplayable(err) {
			t.Errorf("reader never read: %d bytes, %v; want ErrNotReplayable", n, err)
		}
	})
	t.Run("reader waiting at the same position", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newGated()
			l, o := newLazy(g, limit)
			ahead := l.First()
			waiter := mustNext(t, l)
			led := readAsync(ahead, 2*limit)
			<-g.entered
			waited := readAsync(waiter, 2*limit)
			synctest.Wait()
			g.chunks <- data[:limit+1]
			if r := <-led; r.err != nil || !bytes.Equal(r.b, data[:limit+1]) {
				t.Errorf("reader ahead: %d bytes, %v", len(r.b), r.err)
			}
			if r := <-waited; !errors.Is(r.err, errCommitted) || len(r.b) != 0 {
				t.Errorf("waiter: %d bytes, %v; want errCommitted", len(r.b), r.err)
			}
			close(g.chunks)
			ahead.Close()
			waiter.Close()
			l.End()
			wantClosed(t, o, 1, "all closed after End")
		})
	})
	t.Run("exactly the limit", func(t *testing.T) {
		l, o := newLazy(bytes.NewReader(data[:limit]), limit)
		ahead := l.First()
		behind := mustNext(t, l)
		readAll(t, ahead, data[:limit])
		readAll(t, behind, data[:limit])
		readAll(t, mustNext(t, l), data[:limit])
		ahead.Close()
		behind.Close()
		l.End()
		wantClosed(t, o, 0, "a reader left open")
	})
}

// After End, bytes are kept only while another reader may need them: the
// reader alone reads on without keeping (the buffer goes back to the
// pool), while with a second reader open they are kept for it.
func TestLazyKeepsAfterEndOnlyForOtherReaders(t *testing.T) {
	data := payload(8000)
	t.Run("alone", func(t *testing.T) {
		l, _ := newLazy(bytes.NewReader(data), 1<<20)
		r := l.First()
		readN(t, r, data, 1000)
		l.End()
		readAll(t, r, data[1000:])
		l.mu.Lock()
		stopped, buf := l.stopped, l.buf
		l.mu.Unlock()
		if !stopped || buf != nil {
			t.Errorf("after End, alone: stopped %v, buffer held %v; want the buffer given back", stopped, buf != nil)
		}
		r.Close()
	})
	t.Run("with another reader", func(t *testing.T) {
		l, o := newLazy(bytes.NewReader(data), 1<<20)
		r := l.First()
		other := mustNext(t, l)
		readN(t, r, data, 1000)
		l.End()
		readAll(t, r, data[1000:])
		r.Close()
		readAll(t, other, data)
		wantClosed(t, o, 0, "latest reader open")
		other.Close()
		wantClosed(t, o, 1, "all closed")
	})
}
