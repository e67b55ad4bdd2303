package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/saferetry/saferetry/internal/benchserver"
)

// bodySizes are the body sizes of the scenarios.
type bodySizes struct {
	small  int // POST from a bytes.Reader: GetBody is set
	stream int // POST from a plain reader, within saferetry's default buffer cap
	file   int // PUT of a regular file
}

// benchSizes are the sizes the benchmarks send. The stream is exactly
// saferetry's default cap (1 MiB), the largest body it keeps.
var benchSizes = bodySizes{small: 1 << 10, stream: 1 << 20, file: 8 << 20}

// testSizes are smaller sizes for the tests that run in CI, on the same
// code paths (the stream is still kept, the file still read by position).
var testSizes = bodySizes{small: 1 << 10, stream: 64 << 10, file: 256 << 10}

// scenario builds the requests of one benchmark. Each call of request
// returns a new request, whose body (if any) has not been read.
type scenario struct {
	name string
	path string // on the server
	// bytes is the body size, for b.SetBytes; 0 for none.
	bytes int64
	// request returns a fresh request to url.
	request func(tb testing.TB, url string) *http.Request
}

func newRequest(tb testing.TB, method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// scenarios returns the request shapes the benchmarks and tests share,
// with bodies of the given sizes. dir holds the file of the PUT scenario.
func scenarios(tb testing.TB, dir string, size bodySizes) []scenario {
	small := bytes.Repeat([]byte("p"), size.small)
	stream := bytes.Repeat([]byte("s"), size.stream)
	file := filepath.Join(dir, "body")
	if err := os.WriteFile(file, bytes.Repeat([]byte("f"), size.file), 0o600); err != nil {
		tb.Fatal(err)
	}
	return []scenario{
		{name: "GET", path: "/get", request: func(tb testing.TB, url string) *http.Request {
			return newRequest(tb, http.MethodGet, url, nil)
		}},
		{name: "POSTSmall", path: "/drain", bytes: int64(size.small), request: func(tb testing.TB, url string) *http.Request {
			// http.NewRequest sets GetBody for a *bytes.Reader.
			return newRequest(tb, http.MethodPost, url, bytes.NewReader(small))
		}},
		{name: "POSTStream", path: "/drain", bytes: int64(size.stream), request: func(tb testing.TB, url string) *http.Request {
			req := newRequest(tb, http.MethodPost, url, io.NopCloser(&benchserver.StreamReader{Data: stream}))
			req.ContentLength = int64(len(stream)) // declared, as a caller relaying a body of known size does
			return req
		}},
		{name: "PUTFile", path: "/drain", bytes: int64(size.file), request: func(tb testing.TB, url string) *http.Request {
			f, err := os.Open(file)
			if err != nil {
				tb.Fatal(err)
			}
			req := newRequest(tb, http.MethodPut, url, f) // the transport closes f
			req.ContentLength = int64(size.file)          // http.NewRequest leaves it unknown for a file
			return req
		}},
	}
}
