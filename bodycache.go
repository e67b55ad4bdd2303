package saferetry

import (
	"io"
	"net/http"

	"github.com/saferetry/saferetry/internal/bodyreplay"
)

// ErrBodyNotReplayable is wrapped by the error that the GetBody installed by
// BodyCache returns once the request body can no longer be sent again:
// more of it was sent than MaxBodyBytes allows keeping, reading it failed,
// or the round trip is over. A Read of a body handed out earlier fails
// with it too when that body needs bytes that are no longer kept (another
// attempt, reading ahead, went over MaxBodyBytes). A retry layer that sees
// it stops retrying.
var ErrBodyNotReplayable = bodyreplay.ErrNotReplayable

// defaultMaxBodyBytes is the most bytes BodyCache keeps of a body it can
// only read as a stream, when MaxBodyBytes is 0: 1 MiB, as Envoy and
// grpc-java.
const defaultMaxBodyBytes = 1 << 20

// BodyCache is a RoundTripper that makes a request body replayable, so that
// a retry layer below it (Transport) can send it again, byte for byte, and
// so can net/http's own transport when it retries internally. It copies
// the body only when it must:
//
//   - no body, or http.NoBody: the request is passed down as it is;
//   - a body with GetBody already set (http.NewRequest does it for
//     bytes.Reader, bytes.Buffer and strings.Reader): passed down as it is;
//   - a body that can be read by position, such as a regular *os.File, or
//     anything with ReadAt, Seek and Size: every attempt reads its own
//     io.SectionReader over the remaining bytes; nothing is copied;
//   - any other body is kept, in a pooled buffer, while it is first read,
//     up to MaxBodyBytes. A later attempt replays what was kept and then
//     reads on where the others stopped, so an attempt that failed before
//     sending all of the body can still be retried. Once more than
//     MaxBodyBytes was read, the body is committed: it is sent whole, once,
//     and GetBody fails with ErrBodyNotReplayable. A large body never
//     makes a request fail.
//
// Otherwise BodyCache passes a shallow copy of the request down, with the
// same ContentLength and a Body and GetBody of its own; the caller's request
// is never modified. Each body GetBody hands out reads the whole body from
// the start, byte for byte, on its own: attempts may read theirs at the
// same time (hedging), and a new one leaves the earlier ones as they were.
// With a stream, the body furthest ahead reads the caller's body and the
// others replay what it kept; if it is committed, the ones behind fail with
// ErrBodyNotReplayable, so do not hedge a body that may be over the limit.
// The layer below must close every body it gets, sent or not (net/http
// does, even on errors, except one it drops unread on an HTTP/2 GOAWAY,
// which BodyCache allows for). The caller's body is closed exactly once:
// when RoundTrip has returned and every body handed out that may still be
// read is closed; never while one is still being sent, even after
// RoundTrip returned.
//
// The zero value is usable. A BodyCache is safe for concurrent use by
// multiple goroutines; it keeps no state between requests.
type BodyCache struct {
	// Base is the RoundTripper that sends each request. If nil, a pooled
	// transport of the BodyCache's own (go-cleanhttp) is used, never
	// http.DefaultTransport.
	Base http.RoundTripper

	// MaxBodyBytes is the most bytes kept of a body that can only be read
	// as a stream. 0 means 1 MiB; negative means none is
	// kept, so such a request is retried only if its body was not read at
	// all. A body whose ContentLength is over the limit is not kept either.
	MaxBodyBytes int64
}

var _ http.RoundTripper = (*BodyCache)(nil)

// RoundTrip sends req through Base with a replayable body.
func (c *BodyCache) RoundTrip(req *http.Request) (*http.Response, error) {
	base := baseOr(c.Base)
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return base.RoundTrip(req)
	}
	if ra, off, n, ok := bodyreplay.Sized(req.Body); ok {
		s := &sectionRequest{req: *req}
		s.body.Init(req.Body, ra, off, n)
		return replay(base, &s.req, &s.body)
	}
	limit := c.MaxBodyBytes
	if limit == 0 {
		limit = defaultMaxBodyBytes
	}
	l := &lazyRequest{req: *req}
	l.body.Init(req.Body, limit, req.ContentLength)
	return replay(base, &l.req, &l.body)
}

// CloseIdleConnections closes the idle connections of Base, or of the
// BodyCache's own transport, if it has such a method.
func (c *BodyCache) CloseIdleConnections() {
	closeIdleConnections(baseOr(c.Base))
}

// sectionRequest and lazyRequest hold the request passed down and its body
// in one allocation.
type sectionRequest struct {
	req  http.Request
	body bodyreplay.Section
}

type lazyRequest struct {
	req  http.Request
	body bodyreplay.Lazy
}

type replayer interface {
	First() io.ReadCloser
	Next() (io.ReadCloser, error)
	End()
}

// replay sends r2, a shallow copy of the caller's request, with b's body.
func replay(base http.RoundTripper, r2 *http.Request, b replayer) (*http.Response, error) {
	r2.Body = b.First()
	r2.GetBody = b.Next
	defer b.End()
	return base.RoundTrip(r2)
}
