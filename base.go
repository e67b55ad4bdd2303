package saferetry

import (
	"net/http"
	"sync"

	"github.com/hashicorp/go-cleanhttp"
)

// lazyBase resolves a layer's Base field. A nil Base means a pooled
// transport of the layer's own, created on first use: never
// http.DefaultTransport, whose state every package in a process shares.
type lazyBase struct {
	once     sync.Once
	fallback http.RoundTripper
}

func (l *lazyBase) resolve(base http.RoundTripper) http.RoundTripper {
	if base != nil {
		return base
	}
	l.once.Do(func() { l.fallback = cleanhttp.DefaultPooledTransport() })
	return l.fallback
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
