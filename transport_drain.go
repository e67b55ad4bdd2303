package saferetry

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// drainTime bounds how long a discarded response is read for. Draining
// saves a connection (a round trip, perhaps a TLS handshake); a body that
// has not arrived by then is not worth waiting for, and a body that
// stalls must not hold the retry, or the caller, at all.
const drainTime = 100 * time.Millisecond

// discard drains up to maxDrainBytes of a response that will not be
// handed back, for at most drainTime, and closes it, so its connection can
// be reused. A body known to be longer is closed at once: its connection
// cannot be reused anyway.
func discard(resp *http.Response) {
	const limit = maxDrainBytes
	if resp == nil || resp.Body == nil {
		return
	}
	body := resp.Body
	if resp.ContentLength > limit {
		_ = body.Close()
		return
	}
	// Closing the body ends a read in progress, over HTTP/1 and HTTP/2
	// (TestStalledDiscardedBodyOverTheNetwork), and so a stalled drain.
	// The body is closed once, by the timer or here.
	var closed atomic.Bool
	closeOnce := func() {
		if !closed.Swap(true) {
			_ = body.Close()
		}
	}
	stop := time.AfterFunc(drainTime, closeOnce)
	_, _ = io.CopyN(io.Discard, body, limit)
	stop.Stop()
	closeOnce()
}

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

func closeBody(body io.ReadCloser) {
	if body != nil {
		_ = body.Close()
	}
}
