package saferetry

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/saferetry/saferetry/internal/testutil"
)

// streamBody is a body that can only be read as a stream.
type streamBody struct {
	io.Reader
	*testutil.CloseCounter
}

func newStreamBody(b []byte) *streamBody {
	return &streamBody{bytes.NewReader(b), new(testutil.CloseCounter)}
}

// sizedBody can be read by position (ReadAt, Seek, Size) but has no GetBody.
type sizedBody struct {
	*bytes.Reader
	*testutil.CloseCounter
}

func newSizedBody(b []byte) *sizedBody {
	return &sizedBody{bytes.NewReader(b), new(testutil.CloseCounter)}
}

// payload returns n bytes that differ from one position to the next.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func tempFile(t testing.TB, data []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func openFile(t testing.TB, name string, off int64) *os.File {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

// bodyCase builds a request whose body is of one kind, and says what every
// attempt must send.
type bodyCase struct {
	name string
	// build returns the request, the bytes every attempt must send, and
	// the counter of the caller's body closes (nil where the body type
	// cannot count them).
	build func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter)
}

func newPost(t testing.TB, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test", "1")
	return req
}

// bodyCases covers every path of BodyCache with a body of n bytes.
func bodyCases(n int) []bodyCase {
	data := payload(n)
	return []bodyCase{
		{"nil body", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, nil), nil, nil
		}},
		{"http.NoBody", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, http.NoBody), nil, nil
		}},
		{"GetBody from bytes.Reader", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, bytes.NewReader(data)), data, nil
		}},
		{"GetBody from strings.Reader", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, strings.NewReader(string(data))), data, nil
		}},
		{"file, length unknown", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, openFile(t, tempFile(t, data), 0)), data, nil
		}},
		{"file with ContentLength", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			req := newPost(t, url, openFile(t, tempFile(t, data), 0))
			req.ContentLength = int64(len(data))
			return req, data, nil
		}},
		{"file opened at an offset", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			req := newPost(t, url, openFile(t, tempFile(t, data), 100))
			req.ContentLength = int64(len(data) - 100)
			return req, data[100:], nil
		}},
		{"pipe, a file that cannot be read by position", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pr.Close() })
			go func() {
				pw.Write(data) // fails once the reader is closed
				pw.Close()
			}()
			return newPost(t, url, pr), data, nil
		}},
		{"empty file, whose size is not trusted", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			return newPost(t, url, openFile(t, tempFile(t, nil), 0)), []byte{}, nil
		}},
		{"sized reader without GetBody", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			b := newSizedBody(data)
			req := newPost(t, url, b)
			req.ContentLength = int64(len(data))
			return req, data, b.CloseCounter
		}},
		{"NopCloser of a partly read bytes.Reader", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			br := bytes.NewReader(data)
			io.CopyN(io.Discard, br, 7)
			req := newPost(t, url, nil)
			req.Body = io.NopCloser(br)
			req.ContentLength = int64(len(data) - 7)
			return req, data[7:], nil
		}},
		{"stream with ContentLength", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			b := newStreamBody(data)
			req := newPost(t, url, b)
			req.ContentLength = int64(len(data))
			return req, data, b.CloseCounter
		}},
		{"stream, chunked", func(t *testing.T, url string) (*http.Request, []byte, *testutil.CloseCounter) {
			b := newStreamBody(data)
			return newPost(t, url, b), data, b.CloseCounter
		}},
	}
}

// bodyReceived is what the server saw of one request.
type bodyReceived struct {
	body             []byte
	contentLength    int64
	transferEncoding []string
	key              string
}

// recorder is a test server that records each request it reads. The first
// early requests are answered 503 without reading the body, and their
// connection dropped; the next afterRead ones are answered 503 after
// reading it; the rest 200.
type recorder struct {
	early, afterRead int

	mu   sync.Mutex
	n    int
	reqs []bodyReceived
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.n++
	n := rec.n
	rec.mu.Unlock()
	if n <= rec.early {
		// Answer and drop the connection without reading the body, as a
		// proxy shedding load would. (Leaving the body unread on a
		// kept connection would make the server linger 500 ms.)
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		bw.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		bw.Flush()
		conn.Close()
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// The client gave up on this attempt while sending it.
		return
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, bodyReceived{body, r.ContentLength, r.TransferEncoding, r.Header.Get("X-Test")})
	rec.mu.Unlock()
	if n <= rec.early+rec.afterRead {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok")
}

func (rec *recorder) received() []bodyReceived {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.reqs
}

// retrier plays the retry layer below BodyCache, as Transport does: it
// sends the first attempt with req.Body and each later one with a body
// from req.GetBody, on a shallow copy, until a response under 500 or the
// last attempt.
type retrier struct {
	base     http.RoundTripper
	attempts int
	// before, if set, runs before each attempt is sent; if it returns an
	// error, the attempt fails with it without being sent.
	before func(attempt int, r *http.Request) error

	sent       int   // attempts made
	getBodyErr error // what the last GetBody returned
}

func (rt *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	var (
		resp *http.Response
		err  error
	)
	for rt.sent = 1; ; rt.sent++ {
		r := req
		if rt.sent > 1 && req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err
			}
			body, gerr := req.GetBody()
			if rt.getBodyErr = gerr; gerr != nil {
				rt.sent--
				return resp, err
			}
			r2 := *req
			r2.Body = body
			r = &r2
		}
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if rt.before != nil {
			if err = rt.before(rt.sent, r); err != nil {
				if r.Body != nil {
					r.Body.Close()
				}
				resp = nil
				if rt.sent < rt.attempts {
					continue
				}
				return nil, err
			}
		}
		resp, err = rt.base.RoundTrip(r)
		if rt.sent == rt.attempts || (err == nil && resp.StatusCode < 500) {
			return resp, err
		}
	}
}

// serve starts a recorder and a pooled transport, both shut when the test ends.
func serve(t *testing.T, rec *recorder) (url string, tr *http.Transport) {
	srv := httptest.NewServer(rec)
	tr = cleanhttp.DefaultPooledTransport()
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return srv.URL, tr
}

func checkReceived(t *testing.T, got []bodyReceived, want []byte, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("server read %d request bodies, want %d", len(got), n)
	}
	for i, g := range got {
		if !bytes.Equal(g.body, want) {
			t.Errorf("attempt %d: server got %d bytes, want the %d sent (equal prefix: %d)", i+1, len(g.body), len(want), commonPrefix(g.body, want))
		}
		if g.contentLength != got[0].contentLength || !reflect.DeepEqual(g.transferEncoding, got[0].transferEncoding) || g.key != "1" {
			t.Errorf("attempt %d framing: Content-Length %d, Transfer-Encoding %q, header %q; attempt 1: %d, %q",
				i+1, g.contentLength, g.transferEncoding, g.key, got[0].contentLength, got[0].transferEncoding)
		}
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestBodyCacheReplaysEveryBodyKind(t *testing.T) {
	for _, tc := range bodyCases(100 << 10) {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{afterRead: 2}
			url, tr := serve(t, rec)
			req, want, closes := tc.build(t, url)
			before := testutil.Snapshot(req)
			rt := &retrier{base: tr, attempts: 3}

			resp, err := (&BodyCache{Base: rt}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()

			if resp.StatusCode != http.StatusOK || rt.sent != 3 {
				t.Errorf("status %d after %d attempts (GetBody: %v), want 200 after 3", resp.StatusCode, rt.sent, rt.getBodyErr)
			}
			checkReceived(t, rec.received(), want, 3)
			before.Check(t, req)
			if closes != nil {
				closes.WaitClosed(t)
				if n := closes.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times, want 1", n)
				}
			}
		})
	}
}

// An attempt that failed after reading none, some or all of the body is
// retried, and the server gets the whole body.
func TestBodyCacheRetriesAfterPartialRead(t *testing.T) {
	const size = 64 << 10
	for _, tc := range bodyCases(size)[2:] {
		for _, read := range []int{0, 10, size / 2, size} {
			t.Run(tc.name+"/first attempt read "+sizeName(read), func(t *testing.T) {
				rec := &recorder{}
				url, tr := serve(t, rec)
				req, want, closes := tc.build(t, url)
				rt := &retrier{base: tr, attempts: 2, before: func(attempt int, r *http.Request) error {
					if attempt > 1 {
						return nil
					}
					if _, err := io.CopyN(io.Discard, r.Body, int64(read)); err != nil && read < len(want) {
						t.Errorf("reading the first attempt's body: %v", err)
					}
					return errors.New("attempt failed")
				}}

				resp, err := (&BodyCache{Base: rt, MaxBodyBytes: size}).RoundTrip(req)
				if err != nil {
					t.Fatalf("after %d attempts: %v (GetBody: %v)", rt.sent, err, rt.getBodyErr)
				}
				resp.Body.Close()
				checkReceived(t, rec.received(), want, 1)
				if closes != nil {
					closes.WaitClosed(t)
					if n := closes.Closes(); n != 1 {
						t.Errorf("caller's body closed %d times, want 1", n)
					}
				}
			})
		}
	}
}

// sizeName names a byte count in test names.
func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

// The server answers the first attempt and drops it before reading its
// body, so net/http fails or returns while its write loop may still be
// reading the first attempt's body: the second attempt must still send
// the whole body, whatever the first one's reader does meanwhile.
func TestBodyCacheServerAnswersBeforeReading(t *testing.T) {
	const size = 512 << 10
	for _, tc := range bodyCases(size)[4:] {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{early: 1}
			url, tr := serve(t, rec)
			req, want, closes := tc.build(t, url)
			rt := &retrier{base: tr, attempts: 2}

			resp, err := (&BodyCache{Base: rt}).RoundTrip(req)
			if err != nil {
				t.Fatalf("after %d attempts: %v (GetBody: %v)", rt.sent, err, rt.getBodyErr)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkReceived(t, rec.received(), want, 1)
			if closes != nil {
				closes.WaitClosed(t)
				if n := closes.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times, want 1", n)
				}
			}
		})
	}
}

// hedger plays a hedging retry layer below BodyCache: it sends the request
// and two replays of it at the same time, waits for the three answers and
// hands back the first, closing the others.
type hedger struct{ base http.RoundTripper }

func (h hedger) RoundTrip(req *http.Request) (*http.Response, error) {
	reqs := []*http.Request{req}
	for range 2 {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r := *req
		r.Body = body
		reqs = append(reqs, &r)
	}
	resps := make([]*http.Response, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { resps[i], errs[i] = h.base.RoundTrip(r) })
	}
	wg.Wait()
	for i := range resps[1:] {
		if errs[i+1] != nil {
			return nil, errs[i+1]
		}
		io.Copy(io.Discard, resps[i+1].Body)
		resps[i+1].Body.Close()
	}
	return resps[0], errs[0]
}

// Three hedges send the body at the same time over real connections: the
// server gets it whole three times, and the caller's body is closed once.
func TestBodyCacheServesHedgesAtOnce(t *testing.T) {
	for _, tc := range bodyCases(256 << 10)[4:] {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			url, tr := serve(t, rec)
			req, want, closes := tc.build(t, url)
			resp, err := (&BodyCache{Base: hedger{tr}}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			checkReceived(t, rec.received(), want, 3)
			if closes != nil {
				closes.WaitClosed(t)
				if n := closes.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times, want 1", n)
				}
			}
		})
	}
}

// A stream over MaxBodyBytes is sent once, whole; the retry then finds it
// cannot be replayed and hands back the server's answer.
func TestBodyCacheOverLimitIsSentOnce(t *testing.T) {
	const limit = 64 << 10
	for _, tc := range []struct {
		name          string
		size          int
		contentLength bool
	}{
		{"one byte over, chunked", limit + 1, false},
		{"one byte over, ContentLength", limit + 1, true},
		{"four times over, chunked", 4 * limit, false},
		{"four times over, ContentLength", 4 * limit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{afterRead: 1}
			url, tr := serve(t, rec)
			data := payload(tc.size)
			b := newStreamBody(data)
			req := newPost(t, url, b)
			if tc.contentLength {
				req.ContentLength = int64(tc.size)
			}
			rt := &retrier{base: tr, attempts: 3}

			resp, err := (&BodyCache{Base: rt, MaxBodyBytes: limit}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || rt.sent != 1 {
				t.Errorf("status %d after %d attempts, want the 503 of the only attempt", resp.StatusCode, rt.sent)
			}
			if !errors.Is(rt.getBodyErr, ErrBodyNotReplayable) {
				t.Errorf("GetBody error %v, want ErrBodyNotReplayable", rt.getBodyErr)
			}
			checkReceived(t, rec.received(), data, 1)
			b.WaitClosed(t)
			if n := b.Closes(); n != 1 {
				t.Errorf("caller's body closed %d times, want 1", n)
			}
		})
	}
}

// play runs one BodyCache round trip over a fake inner transport that
// calls attempt with the request it got, then returns 204.
func play(t *testing.T, c *BodyCache, req *http.Request, attempt func(r *http.Request)) *http.Request {
	t.Helper()
	var got *http.Request
	c.Base = testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		attempt(r)
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
	})
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return got
}

func mustGetBody(t *testing.T, r *http.Request) io.ReadCloser {
	t.Helper()
	if r.GetBody == nil {
		t.Fatal("no GetBody")
	}
	body, err := r.GetBody()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func readAll(t *testing.T, r io.Reader, want []byte) {
	t.Helper()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d (equal prefix %d)", len(got), len(want), commonPrefix(got, want))
	}
}

func TestBodyCachePassesThroughWithoutAllocating(t *testing.T) {
	for _, tc := range bodyCases(1 << 10)[:4] {
		t.Run(tc.name, func(t *testing.T) {
			req, _, _ := tc.build(t, "http://example.invalid/")
			before := testutil.Snapshot(req)
			resp := &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}
			c := &BodyCache{Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r != req {
					t.Error("request was copied")
				}
				return resp, nil
			})}
			if n := testing.AllocsPerRun(100, func() { c.RoundTrip(req) }); n != 0 {
				t.Errorf("%v allocations per request, want 0", n)
			}
			before.Check(t, req)
		})
	}
}

// A file is read by position on every attempt, never copied: what a later
// attempt sends is what the file holds when it reads it.
func TestBodyCacheReadsFileByPosition(t *testing.T) {
	data := payload(32 << 10)
	for _, off := range []int64{0, 1000} {
		t.Run("offset "+sizeName(int(off)), func(t *testing.T) {
			name := tempFile(t, data)
			f := openFile(t, name, off)
			req := newPost(t, "http://example.invalid/", f)
			changed := bytes.Repeat([]byte("x"), len(data))

			got := play(t, &BodyCache{}, req, func(r *http.Request) {
				if _, ok := r.Body.(*os.File); ok {
					t.Fatal("the file itself was passed down")
				}
				readAll(t, r.Body, data[off:])
				r.Body.Close()
				if err := os.WriteFile(name, changed, 0o600); err != nil {
					t.Fatal(err)
				}
				b := mustGetBody(t, r)
				readAll(t, b, changed[off:])
				b.Close()
			})
			if _, err := got.GetBody(); !errors.Is(err, ErrBodyNotReplayable) {
				t.Errorf("GetBody after the round trip: %v, want ErrBodyNotReplayable", err)
			}
			if err := f.Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("the caller's file was not closed (Close: %v)", err)
			}
		})
	}
}

// MaxBodyBytes reaches the stream's replay as its limit (0 meaning the
// default, negative none) and ContentLength as its size. What the limit
// does is tested in internal/bodyreplay (TestLazyLimit).
func TestBodyCacheMaxBodyBytes(t *testing.T) {
	const limit = 1000
	for _, tc := range []struct {
		name          string
		max           int64
		size          int
		contentLength bool
		read          int  // what the first attempt reads
		replayable    bool // whether GetBody then works
	}{
		{"ContentLength over, nothing read", limit, 2 * limit, true, 0, true},
		{"ContentLength over, one byte read", limit, 2 * limit, true, 1, false},
		{"negative limit, nothing read", -1, 10, false, 0, true},
		{"negative limit, one byte read", -1, 10, false, 1, false},
		{"default limit", 0, defaultMaxBodyBytes, false, defaultMaxBodyBytes, true},
		{"default limit, one byte over", 0, defaultMaxBodyBytes + 1, false, defaultMaxBodyBytes + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(tc.size)
			b := newStreamBody(data)
			req := newPost(t, "http://example.invalid/", b)
			if tc.contentLength {
				req.ContentLength = int64(tc.size)
			}
			play(t, &BodyCache{MaxBodyBytes: tc.max}, req, func(r *http.Request) {
				head := make([]byte, tc.read)
				if _, err := io.ReadFull(r.Body, head); err != nil {
					t.Fatal(err)
				}
				r2, err := r.GetBody()
				if tc.replayable != (err == nil) {
					t.Fatalf("GetBody: %v, replayable: %v", err, tc.replayable)
				}
				if err == nil {
					readAll(t, r2, data)
					r2.Close()
				} else {
					if !errors.Is(err, ErrBodyNotReplayable) {
						t.Errorf("GetBody: %v, want ErrBodyNotReplayable", err)
					}
					// The attempt that committed goes on, unmodified.
					readAll(t, r.Body, data[tc.read:])
				}
				r.Body.Close()
			})
			if n := b.Closes(); n != 1 {
				t.Errorf("caller's body closed %d times, want 1", n)
			}
		})
	}
}

// The caller's body is closed exactly once, when RoundTrip has returned and
// every reader handed out is closed, whatever the layer below does.
func TestBodyCacheClosesCallerBodyOnce(t *testing.T) {
	errFail := errors.New("inner failed")
	bodies := []struct {
		name string
		new  func() (io.ReadCloser, *testutil.CloseCounter)
	}{
		{"stream", func() (io.ReadCloser, *testutil.CloseCounter) {
			b := newStreamBody(payload(100))
			return b, b.CloseCounter
		}},
		{"sized", func() (io.ReadCloser, *testutil.CloseCounter) {
			b := newSizedBody(payload(100))
			return b, b.CloseCounter
		}},
	}
	for _, tc := range []struct {
		name string
		// inner plays the layer below; it returns readers it leaves open,
		// which the test closes after RoundTrip returned.
		inner func(r *http.Request) (open []io.Closer, err error)
	}{
		{"inner never reads, closes", func(r *http.Request) ([]io.Closer, error) {
			return nil, r.Body.Close()
		}},
		{"inner fails without reading", func(r *http.Request) ([]io.Closer, error) {
			r.Body.Close()
			return nil, errFail
		}},
		{"inner reads and closes", func(r *http.Request) ([]io.Closer, error) {
			io.Copy(io.Discard, r.Body)
			return nil, r.Body.Close()
		}},
		{"inner closes twice", func(r *http.Request) ([]io.Closer, error) {
			r.Body.Close()
			return nil, r.Body.Close()
		}},
		{"inner replays three times", func(r *http.Request) ([]io.Closer, error) {
			r.Body.Close()
			for range 3 {
				b, err := r.GetBody()
				if err != nil {
					return nil, err
				}
				io.Copy(io.Discard, b)
				b.Close()
			}
			return nil, nil
		}},
		{"body closed after RoundTrip returned", func(r *http.Request) ([]io.Closer, error) {
			return []io.Closer{r.Body}, nil
		}},
		{"replay closed after failed RoundTrip returned", func(r *http.Request) ([]io.Closer, error) {
			r.Body.Close()
			b, err := r.GetBody()
			if err != nil {
				return nil, err
			}
			return []io.Closer{b}, errFail
		}},
	} {
		for _, body := range bodies {
			t.Run(tc.name+"/"+body.name, func(t *testing.T) {
				orig, closes := body.new()
				req := newPost(t, "http://example.invalid/", orig)
				var (
					open []io.Closer
					got  *http.Request
				)
				c := &BodyCache{Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					got = r
					var err error
					if open, err = tc.inner(r); err != nil {
						return nil, err
					}
					if closes.Closes() > 0 {
						t.Error("caller's body closed before RoundTrip returned")
					}
					return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}, nil
				})}
				c.RoundTrip(req)
				if _, err := got.GetBody(); !errors.Is(err, ErrBodyNotReplayable) {
					t.Errorf("GetBody after RoundTrip: %v, want ErrBodyNotReplayable", err)
				}
				for _, b := range open {
					if closes.Closes() > 0 {
						t.Error("caller's body closed while a reader was open")
					}
					b.Close()
				}
				if n := closes.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times, want 1", n)
				}
			})
		}
	}
}

// resettableStream is a stream body that can be read again, to measure
// steady traffic without allocating a body per request.
type resettableStream struct {
	r    bytes.Reader
	data []byte
}

func (s *resettableStream) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *resettableStream) Close() error               { return nil }
func (s *resettableStream) reset()                     { s.r.Reset(s.data) }

// drainTwice plays two attempts: it sends the body, then a replay of it.
var drainTwice = testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
	if r.Body == nil {
		return noContent, nil
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.GetBody != nil {
		if b, err := r.GetBody(); err == nil {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}
	return noContent, nil
})

var noContent = &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}

// Steady traffic reuses pooled buffers: a 1 MiB stream, sent and replayed,
// costs far less than 1 MiB per request once the pool is warm.
func TestBodyCacheReusesBuffers(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	// A collection would empty the pool. One P, as in testing.AllocsPerRun,
	// makes the count exact: with several, a buffer put in one P's private
	// slot is out of reach of a goroutine that has moved to another P, an
	// occasional miss that the benchmarks show amortised.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, contentLength := range []int64{0, defaultMaxBodyBytes} {
		t.Run("ContentLength "+sizeName(int(contentLength)), func(t *testing.T) {
			s := &resettableStream{data: payload(defaultMaxBodyBytes)}
			req := newPost(t, "http://example.invalid/", s)
			req.ContentLength = contentLength
			c := &BodyCache{Base: drainTwice}
			send := func() {
				s.reset()
				c.RoundTrip(req)
			}
			send() // warm the pool

			const runs = 20
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for range runs {
				send()
			}
			runtime.ReadMemStats(&m1)
			if perOp := (m1.TotalAlloc - m0.TotalAlloc) / runs; perOp > 4<<10 {
				t.Errorf("%d bytes allocated per request, want under 4 KiB", perOp)
			}
			if n := testing.AllocsPerRun(runs, send); n > 3 {
				t.Errorf("%v allocations per request, want at most 3", n)
			}
		})
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type idleCloser struct {
	http.RoundTripper
	n int
}

func (c *idleCloser) CloseIdleConnections() { c.n++ }

func TestBodyCacheCloseIdleConnections(t *testing.T) {
	base := &idleCloser{RoundTripper: drainTwice}
	(&BodyCache{Base: base}).CloseIdleConnections()
	if base.n != 1 {
		t.Errorf("Base.CloseIdleConnections called %d times, want 1", base.n)
	}

	// With no Base, BodyCache sends through a pooled transport of its own.
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := &BodyCache{}
	defer c.CloseIdleConnections()
	data := payload(10 << 10)
	resp, err := c.RoundTrip(newPost(t, srv.URL, newStreamBody(data)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	checkReceived(t, rec.received(), data, 1)
}

func BenchmarkBodyCache(b *testing.B) {
	file := tempFile(b, payload(1<<20))
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()

	for _, bc := range []struct {
		name string
		// body sets req's body up for one more request.
		body func() (reset func(req *http.Request))
	}{
		{"no body", func() func(*http.Request) { return func(*http.Request) {} }},
		{"GetBody 1KiB", func() func(*http.Request) {
			data := payload(1 << 10)
			br := bytes.NewReader(data)
			body := io.NopCloser(br)
			getBody := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
			return func(req *http.Request) {
				br.Reset(data)
				req.Body, req.GetBody = body, getBody
				req.ContentLength = int64(len(data))
			}
		}},
		{"file 1MiB", func() func(*http.Request) {
			body := io.NopCloser(f) // keeps the file open from one request to the next
			return func(req *http.Request) {
				f.Seek(0, io.SeekStart)
				req.Body = body
			}
		}},
		{"sized 1KiB", func() func(*http.Request) {
			data := payload(1 << 10)
			br := bytes.NewReader(data)
			body := io.NopCloser(br)
			return func(req *http.Request) {
				br.Reset(data)
				req.Body = body
			}
		}},
		{"stream 1KiB", streamReset(1 << 10)},
		{"stream 1MiB", streamReset(1 << 20)},
		{"stream 2MiB over limit", streamReset(2 << 20)},
	} {
		for _, layer := range []struct {
			name string
			rt   http.RoundTripper
		}{
			{"bare", drainTwice},
			{"BodyCache", &BodyCache{Base: drainTwice}},
		} {
			b.Run(bc.name+"/"+layer.name, func(b *testing.B) {
				req := newPost(b, "http://example.invalid/", nil)
				reset := bc.body()
				b.ReportAllocs()
				for b.Loop() {
					reset(req)
					layer.rt.RoundTrip(req)
				}
			})
		}
	}
}

func streamReset(n int) func() func(*http.Request) {
	return func() func(*http.Request) {
		s := &resettableStream{data: payload(n)}
		return func(req *http.Request) {
			s.reset()
			req.Body = s
		}
	}
}

// BenchmarkBodyCacheLoopback posts a 1 MiB stream to a local server, through
// the bare pooled transport and through BodyCache over it.
func BenchmarkBodyCacheLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	tr := cleanhttp.DefaultPooledTransport()
	defer tr.CloseIdleConnections()
	s := &resettableStream{data: payload(1 << 20)}
	for _, layer := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", tr},
		{"BodyCache", &BodyCache{Base: tr}},
	} {
		b.Run(layer.name, func(b *testing.B) {
			req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.ContentLength = int64(len(s.data))
			b.SetBytes(int64(len(s.data)))
			b.ReportAllocs()
			for b.Loop() {
				s.reset()
				req.Body = s
				resp, err := layer.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
