package bodyreplay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// Tests of what both Section and Lazy promise to readers read at the same
// time (hedged attempts) and about when the original body is closed.

// readChunks reads r to its end with buffers of random sizes.
func readChunks(r io.Reader, rng *rand.Rand) ([]byte, error) {
	var got []byte
	for {
		p := make([]byte, 1+rng.IntN(4096))
		k, err := r.Read(p)
		got = append(got, p[:k]...)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// Every reader handed out reads the whole body on its own, while earlier
// ones go on reading theirs: a replay does not detach anything.
func TestReadersAreIndependent(t *testing.T) {
	data := payload(1000)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(1, 2)))
			r1 := rp.First()
			head := make([]byte, 100)
			if _, err := io.ReadFull(r1, head); err != nil {
				t.Fatal(err)
			}
			r2 := mustNext(t, rp)
			n, err := r1.Read(head)
			if err != nil || !bytes.Equal(head[:n], data[100:100+n]) {
				t.Errorf("earlier reader, after a replay, read %q, %v", head[:n], err)
			}
			readAll(t, r2, data)
			r3 := mustNext(t, rp)
			readAll(t, r3, data)
			readAll(t, r1, data[100+n:])
			for _, b := range []io.Closer{r1, r2, r3} {
				b.Close()
			}
			if _, err := r1.Read(head); !errors.Is(err, ErrClosed) {
				t.Errorf("read after Close: %v, want ErrClosed", err)
			}
			rp.End()
			wantClosed(t, o, 1, "after End")
		})
	}
}

// Three hedges read the body at once, each from the start: each gets all
// of it, byte for byte, whether they start together or one after another
// reads part of it.
func TestHedgesReadTheWholeBodyAtOnce(t *testing.T) {
	for _, k := range kinds {
		for _, size := range []int{1, 1000, 64 << 10} {
			for _, staggered := range []bool{false, true} {
				name := k.name + "/" + map[bool]string{false: "together", true: "staggered"}[staggered]
				t.Run(name, func(t *testing.T) {
					for seed := range uint64(20) {
						hedges(t, k, size, staggered, seed)
					}
				})
			}
		}
	}
}

func hedges(t *testing.T, k kind, size int, staggered bool, seed uint64) {
	data := payload(size)
	rp, o := k.open(data, 1<<20, seed%2 == 0, rand.New(rand.NewPCG(seed, 1)))
	readers := []io.ReadCloser{rp.First()}
	if !staggered {
		readers = append(readers, mustNext(t, rp), mustNext(t, rp))
	}
	var wg sync.WaitGroup
	got := make([][]byte, 3)
	errs := make([]error, 3)
	for i := range 3 {
		if staggered && i > 0 {
			// The next hedge starts once the previous one has read
			// a little, while it goes on reading.
			readers = append(readers, mustNext(t, rp))
		}
		started := make(chan struct{})
		r := readers[i]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i+2)))
			b := make([]byte, 1+rng.IntN(size))
			n, err := io.ReadFull(r, b)
			close(started)
			if err != nil {
				errs[i] = err
				return
			}
			rest, err := readChunks(r, rng)
			got[i], errs[i] = append(b[:n], rest...), err
			r.Close()
		})
		if staggered {
			<-started
		}
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || !bytes.Equal(got[i], data) {
			t.Fatalf("seed %d: hedge %d read %d of %d bytes (equal prefix %d), %v",
				seed, i+1, len(got[i]), len(data), commonPrefix(got[i], data), errs[i])
		}
	}
	wantClosed(t, o, 0, "every reader closed, round trip not over")
	rp.End()
	wantClosed(t, o, 1, "after End")
}

// The original is closed exactly once, when the round trip is over and
// every reader that holds it is closed: not while a reader is still being
// read after End, as net/http's write loop does when the server answered
// early.
func TestEndWhileAReaderStillReads(t *testing.T) {
	data := payload(10_000)
	for _, k := range kinds {
		for _, which := range []string{"first", "replay"} {
			t.Run(k.name+"/"+which, func(t *testing.T) {
				rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(1, 2)))
				r := rp.First()
				if which == "replay" {
					readN(t, r, data, 3000)
					r.Close()
					r = mustNext(t, rp)
				}
				readN(t, r, data, 4000)
				rp.End()
				wantClosed(t, o, 0, "End while a reader is being read")
				if _, err := rp.Next(); !isNotReplayable(err) {
					t.Errorf("Next after End: %v, want ErrNotReplayable", err)
				}
				readAll(t, r, data[4000:])
				wantClosed(t, o, 0, "reader read to its end, not closed")
				r.Close()
				wantClosed(t, o, 1, "reader closed")
				r.Close()
				wantClosed(t, o, 1, "reader closed twice")
			})
		}
	}
}

// net/http's HTTP/2 retry on GOAWAY asks GetBody for a body it drops,
// never read nor closed, then asks again for the body it sends. The
// dropped one must not keep the original open once the round trip is over.
func TestNeverReadReaderDoesNotKeepOriginalOpen(t *testing.T) {
	data := payload(1000)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(1, 2)))
			first := rp.First()
			readAll(t, first, data)
			first.Close()
			dropped := mustNext(t, rp)
			sent := mustNext(t, rp)
			readAll(t, sent, data)
			sent.Close()
			wantClosed(t, o, 0, "before End")
			rp.End()
			wantClosed(t, o, 1, "after End, the dropped reader never closed")

			// Read after all, it fails cleanly, without touching the
			// closed original; closing it changes nothing.
			if n, err := dropped.Read(make([]byte, 10)); n != 0 || !isNotReplayable(err) {
				t.Errorf("dropped reader read after the original was closed: %d, %v; want ErrNotReplayable", n, err)
			}
			dropped.Close()
			wantClosed(t, o, 1, "dropped reader closed")
		})
	}
}

// A reader that lost its claim at End but is read while the original is
// still held by another reader takes a claim again and reads it all.
func TestNeverReadReaderReadAfterEnd(t *testing.T) {
	data := payload(5000)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(1, 2)))
			first := rp.First()
			readN(t, first, data, 100) // holds the original
			late := mustNext(t, rp)
			latest := mustNext(t, rp)
			latest.Close()
			rp.End()
			readAll(t, late, data)
			first.Close()
			wantClosed(t, o, 0, "late reader still open")
			late.Close()
			wantClosed(t, o, 1, "every reader closed")
		})
	}
}

// The first reader and the latest one, never read by End, keep the
// original open: the layer below passed them down and will read or close
// them, maybe only after the round trip returned (an HTTP/2 stream whose
// answer came before its body was sent).
func TestFirstAndLatestReadersAreSparedAtEnd(t *testing.T) {
	data := payload(3000)
	for _, k := range kinds {
		for _, which := range []string{"first", "latest"} {
			t.Run(k.name+"/"+which, func(t *testing.T) {
				rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(1, 2)))
				r := rp.First()
				if which == "latest" {
					readN(t, r, data, 10)
					r.Close()
					r = mustNext(t, rp)
				}
				rp.End()
				wantClosed(t, o, 0, "spared reader not yet read")
				readAll(t, r, data)
				wantClosed(t, o, 0, "spared reader read, not closed")
				r.Close()
				wantClosed(t, o, 1, "spared reader closed")
			})
		}
	}
}

// Closing one reader, even while it is being read, does not disturb the
// others.
func TestCloseOneReaderWhileOthersRead(t *testing.T) {
	data := payload(200_000)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for seed := range uint64(10) {
				rp, o := k.open(data, 1<<20, false, rand.New(rand.NewPCG(seed, 9)))
				readers := []io.ReadCloser{rp.First(), mustNext(t, rp), mustNext(t, rp)}
				var wg sync.WaitGroup
				results := make([]readResult, 3)
				for i, r := range readers {
					wg.Go(func() {
						b, err := readChunks(r, rand.New(rand.NewPCG(seed, uint64(i))))
						results[i] = readResult{b, err}
					})
				}
				readers[1].Close() // while it may be reading
				wg.Wait()
				for _, i := range []int{0, 2} {
					if r := results[i]; r.err != nil || !bytes.Equal(r.b, data) {
						t.Fatalf("seed %d: reader %d read %d bytes, %v", seed, i, len(r.b), r.err)
					}
				}
				if r := results[1]; !errors.Is(r.err, ErrClosed) && (r.err != nil || !bytes.Equal(r.b, data)) {
					t.Fatalf("seed %d: closed reader ended with %d bytes, %v; want ErrClosed or the whole body", seed, len(r.b), r.err)
				} else if !bytes.Equal(r.b, data[:len(r.b)]) {
					t.Fatalf("seed %d: closed reader read bytes that differ from the body", seed)
				}
				if _, err := readers[1].Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
					t.Fatalf("read after Close: %v, want ErrClosed", err)
				}
				rp.End()
				wantClosed(t, o, 0, "two readers open")
				readers[0].Close()
				readers[2].Close()
				wantClosed(t, o, 1, "all closed")
			}
		})
	}
}

// Readers read, close and are handed out at random while End comes at a
// random point: every byte a reader returns is the body's, each reader
// that reads to the end gets all of it, and the original is closed once,
// never while a reader that returned bytes is still open.
func TestRandomConcurrentReaders(t *testing.T) {
	data := payload(50_000)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for seed := range uint64(30) {
				randomRun(t, k, data, seed)
			}
		})
	}
}

func randomRun(t *testing.T, k kind, data []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0))
	rp, o := k.open(data, 1<<20, rng.IntN(2) == 0, rand.New(rand.NewPCG(seed, 1)))
	// holding counts readers that returned bytes and have not started
	// closing: each holds a claim, so the original must stay open.
	var holding atomic.Int32
	var violation atomic.Bool
	o.onClose = func() {
		if holding.Load() > 0 {
			violation.Store(true)
		}
	}
	var wg sync.WaitGroup
	failures := make(chan string, 8)
	spawn := func(r io.ReadCloser, id uint64) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, 100+id))
			closeAfter := -1
			if rng.IntN(3) == 0 {
				closeAfter = rng.IntN(len(data))
			}
			var got []byte
			held := false
			var err error
			for {
				p := make([]byte, 1+rng.IntN(3000))
				var n int
				n, err = r.Read(p)
				if n > 0 && !held {
					held = true
					holding.Add(1)
				}
				got = append(got, p[:n]...)
				if err != nil || (closeAfter >= 0 && len(got) >= closeAfter) {
					break
				}
			}
			if !bytes.Equal(got, data[:min(len(got), len(data))]) || len(got) > len(data) {
				failures <- "a reader returned bytes that are not the body's"
			}
			switch {
			case err == io.EOF && len(got) != len(data):
				failures <- "a reader hit EOF before the end of the body"
			case isNotReplayable(err) && len(got) > 0:
				// Only a reader that lost its claim at End, never
				// read, may find the original closed.
				failures <- "a reader failed after reading some of the body: " + err.Error()
			case err != nil && err != io.EOF && !isNotReplayable(err):
				failures <- "a reader failed with " + err.Error()
			}
			if held {
				holding.Add(-1)
			}
			r.Close()
		})
	}
	spawn(rp.First(), 0)
	ended := false
	for i := range uint64(4) {
		if !ended && rng.IntN(3) == 0 {
			rp.End()
			ended = true
			continue
		}
		r, err := rp.Next()
		if err != nil {
			if !ended {
				t.Fatalf("seed %d: Next before End: %v", seed, err)
			}
			continue
		}
		spawn(r, i+1)
	}
	if !ended {
		rp.End()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatalf("seed %d: %s", seed, f)
	}
	if violation.Load() {
		t.Fatalf("seed %d: original closed while a reader that had returned bytes was open", seed)
	}
	wantClosed(t, o, 1, "every reader closed after End")
}
