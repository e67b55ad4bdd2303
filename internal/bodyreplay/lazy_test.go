package bodyreplay

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// failing returns its bytes, then err instead of EOF.
type failing struct {
	r   io.Reader
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

func TestLazyReadErrorIsNotReplayed(t *testing.T) {
	boom := errors.New("boom")
	data := payload(1000)

	t.Run("Next after the error", func(t *testing.T) {
		l, o := newLazy(&failing{bytes.NewReader(data), boom}, 1<<20)
		first := l.First()
		if _, err := io.ReadAll(first); !errors.Is(err, boom) {
			t.Errorf("first attempt: %v, want boom", err)
		}
		first.Close()
		_, err := l.Next()
		if !errors.Is(err, ErrNotReplayable) || !errors.Is(err, boom) {
			t.Errorf("Next: %v, want ErrNotReplayable and boom", err)
		}
		l.End()
		wantClosed(t, o, 1, "after End")
	})
	t.Run("reader handed out before the error", func(t *testing.T) {
		l, o := newLazy(&failing{bytes.NewReader(data), boom}, 1<<20)
		first := l.First()
		io.CopyN(io.Discard, first, 500)
		first.Close()
		b := mustNext(t, l)
		got, err := io.ReadAll(b)
		if !errors.Is(err, boom) || !bytes.Equal(got, data) {
			t.Errorf("read %d bytes, %v; want all %d, then boom", len(got), err, len(data))
		}
		b.Close()
		l.End()
		wantClosed(t, o, 1, "after End")
	})
}

func TestLazyLimit(t *testing.T) {
	const limit = 1000
	for _, tc := range []struct {
		name       string
		limit      int64
		size       int
		sized      bool // Init is told the size, as BodyCache does with ContentLength
		read       int  // what the first attempt reads
		replayable bool // whether Next then works
	}{
		{"exactly the limit", limit, limit, false, limit, true},
		{"one byte over", limit, limit + 1, false, limit + 1, false},
		{"over, read up to the limit", limit, 2 * limit, false, limit, true},
		{"over, nothing read", limit, 2 * limit, false, 0, true},
		{"size over, nothing read", limit, 2 * limit, true, 0, true},
		{"size over, one byte read", limit, 2 * limit, true, 1, false},
		{"negative limit, nothing read", -1, 10, false, 0, true},
		{"negative limit, one byte read", -1, 10, false, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(tc.size)
			o := &origin{Reader: bytes.NewReader(data)}
			l := new(Lazy)
			size := int64(0)
			if tc.sized {
				size = int64(tc.size)
			}
			l.Init(o, tc.limit, size)
			first := l.First()
			readN(t, first, data, tc.read)
			r2, err := l.Next()
			if tc.replayable != (err == nil) {
				t.Fatalf("Next: %v, replayable: %v", err, tc.replayable)
			}
			if err == nil {
				readAll(t, r2, data)
				r2.Close()
			} else {
				if !errors.Is(err, ErrNotReplayable) {
					t.Errorf("Next: %v, want ErrNotReplayable", err)
				}
				// The attempt that committed goes on, unmodified.
				readAll(t, first, data[tc.read:])
			}
			first.Close()
			l.End()
			wantClosed(t, o, 1, "every reader closed after End")
		})
	}
}

// When net/http gives up on an attempt whose write loop is stuck reading
// the caller's body, closing what it holds must close the caller's body
// (once the round trip is over), which is what unblocks that read.
func TestLazyCloseUnblocksStuckRead(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	o := &origin{Reader: pr, onClose: func() { pr.Close() }}
	l := new(Lazy)
	l.Init(o, 1<<20, 0)
	r := l.First()
	stuck := make(chan error)
	go func() {
		_, err := io.Copy(io.Discard, r)
		stuck <- err
	}()
	pw.Write([]byte("some")) // the reader is now inside the pipe's Read, or about to be
	r.Close()
	l.End()
	if err := <-stuck; err == nil {
		t.Error("stuck read ended without error")
	}
	wantClosed(t, o, 1, "after End")
}
