package saferetryotel

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel/attribute"
)

// Attribute keys. The first group is the OpenTelemetry HTTP semantic
// conventions' (stable); the saferetry.* keys are this package's own, in
// a namespace of its own as the conventions' naming rules recommend.
const (
	keyMethod         = attribute.Key("http.request.method")
	keyMethodOriginal = attribute.Key("http.request.method_original")
	keyServerAddress  = attribute.Key("server.address")
	keyServerPort     = attribute.Key("server.port")
	keyURLFull        = attribute.Key("url.full")
	keyStatusCode     = attribute.Key("http.response.status_code")
	keyErrorType      = attribute.Key("error.type")
	keyResendCount    = attribute.Key("http.request.resend_count")
	keyProtocolVer    = attribute.Key("network.protocol.version")

	keyAttempt        = attribute.Key("saferetry.attempt")
	keyDelay          = attribute.Key("saferetry.retry.delay")
	keyServerDirected = attribute.Key("saferetry.retry.server_directed")
	keyStopReason     = attribute.Key("saferetry.stop.reason")
)

// otherValue is the conventions' value for a method or an error type the
// instrumentation does not know.
const otherValue = "_OTHER"

// knownMethods are RFC 9110's methods and PATCH: the conventions' default
// set. Any other method is recorded as _OTHER, so a client sending
// arbitrary methods cannot blow up the metrics' cardinality.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true, http.MethodPatch: true,
}

// method returns the request's method as the conventions record it, and
// whether it is a known one.
func method(req *http.Request) (string, bool) {
	m := req.Method
	if m == "" {
		return http.MethodGet, true // net/http's reading of an empty method
	}
	if knownMethods[m] {
		return m, true
	}
	return otherValue, false
}

// server returns the host and port the request is addressed to: the Host
// header's when the request sets one (the conventions' server.address
// follows it), the URL's otherwise; the port defaults to the scheme's.
// port is 0 when unknown.
func server(req *http.Request) (host string, port int) {
	hostport := req.Host
	if hostport == "" {
		hostport = req.URL.Host
	}
	return splitHostPort(hostport, req.URL.Scheme)
}

// splitHostPort splits "host[:port]" as a URL's Host holds it, brackets
// of an IPv6 literal removed, without allocating; without a port it
// returns scheme's default, and 0 when there is none.
func splitHostPort(hostport, scheme string) (string, int) {
	host, port := hostport, 0
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.IndexByte(hostport[i:], ']') < 0 &&
		(hostport[0] == '[' || strings.IndexByte(hostport[:i], ':') < 0) {
		// A port: after the last colon, outside brackets, and not the
		// last group of a bare IPv6 address.
		host = hostport[:i]
		if p, err := strconv.Atoi(hostport[i+1:]); err == nil && p > 0 && p <= 65535 {
			port = p
		}
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if port == 0 {
		switch scheme {
		case "http":
			port = 80
		case "https":
			port = 443
		}
	}
	return host, port
}

// serverAttrs appends server.address and, when known, server.port.
func serverAttrs(kvs []attribute.KeyValue, host string, port int) []attribute.KeyValue {
	kvs = append(kvs, keyServerAddress.String(host))
	if port > 0 {
		kvs = append(kvs, keyServerPort.Int(port))
	}
	return kvs
}

// errorType returns a low-cardinality name for err, as error.type wants:
// a name for the failures saferetry and the context distinguish, or the
// Go type of the most specific error in the chain that is not a generic
// wrapper ("*net.OpError", "x509.UnknownAuthorityError"), or _OTHER. The
// message is never used: it may quote a URL.
func errorType(err error) string {
	switch {
	case errors.Is(err, saferetry.ErrAttemptTimeout):
		return "attempt_timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if name := reflect.TypeOf(e).String(); !genericErrorTypes[name] {
			return name
		}
	}
	return otherValue
}

// genericErrorTypes say nothing about a failure but that it happened.
var genericErrorTypes = map[string]bool{
	"*errors.errorString": true,
	"*fmt.wrapError":      true,
	"*fmt.wrapErrors":     true,
	"*errors.joinError":   true,
	"*url.Error":          true,
}

// stopName returns the saferetry.stop.reason value of a stop: short,
// stable snake_case names, independent of StopReason.String's prose.
func stopName(r saferetry.StopReason) string {
	switch r {
	case saferetry.StopMaxRetries:
		return "max_retries"
	case saferetry.StopBudget:
		return "budget"
	case saferetry.StopDeadline:
		return "deadline"
	case saferetry.StopRetryAfterTooLong:
		return "retry_after_cap"
	case saferetry.StopBodyNotReplayable:
		return "body_not_replayable"
	case saferetry.StopNotRetryable:
		return "not_retryable"
	case saferetry.StopCanceled:
		return "canceled"
	}
	if name, ok := newerStopName(r); ok {
		return name
	}
	return otherValue
}
