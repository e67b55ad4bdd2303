package saferetry

import (
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// sharedBase is the transport of every layer whose Base is nil: a pooled
// transport of this package's own, created on first use, never
// http.DefaultTransport, whose settings any package in the process may
// change. A layer holds no state of its own for it, so a Transport can be
// copied (per-request overrides do).
var sharedBase struct {
	once sync.Once
	t    *http.Transport
}

// baseOr returns rt, or the shared default transport when rt is nil.
func baseOr(rt http.RoundTripper) http.RoundTripper {
	if rt != nil {
		return rt
	}
	sharedBase.once.Do(func() { sharedBase.t = defaultBase() })
	return sharedBase.t
}

// HTTP/2 health checks of the default base, as Kubernetes' client-go sets
// them: a connection that has read no frame for h2PingAfter is pinged, and
// closed if the ping is not answered within h2PingTimeout, or if a write
// makes no progress for h2WriteTimeout. Without them a connection that
// died silently (a NAT entry dropped, a peer gone without a FIN) keeps
// taking requests, retries included, until the OS gives up on it, which
// takes many minutes.
const (
	h2PingAfter    = 30 * time.Second
	h2PingTimeout  = 15 * time.Second
	h2WriteTimeout = 30 * time.Second
)

// defaultBase returns the transport a stack uses when given none: a fresh
// pooled transport from go-cleanhttp, with HTTP/2 health checks.
func defaultBase() *http.Transport {
	t := cleanhttp.DefaultPooledTransport()
	t.HTTP2 = &http.HTTP2Config{
		SendPingTimeout:  h2PingAfter,
		PingTimeout:      h2PingTimeout,
		WriteByteTimeout: h2WriteTimeout,
	}
	return t
}

// closeIdler is the optional interface http.Client.CloseIdleConnections
// looks for on its Transport.
type closeIdler interface{ CloseIdleConnections() }

// closeIdleConnections forwards CloseIdleConnections to rt when it has it.
func closeIdleConnections(rt http.RoundTripper) {
	if c, ok := rt.(closeIdler); ok {
		c.CloseIdleConnections()
	}
}
