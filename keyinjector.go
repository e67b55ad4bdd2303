package saferetry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// finishTimeout bounds KeyStore.Finish, which runs after the final
// response arrived and before it is handed to the caller. A store that
// stalls (an unreachable Redis, a SQLite file another process keeps
// locked) must not hold a response the caller is waiting for: after
// finishTimeout the operation is left pending, which is safe (sending it
// again reuses its key, and the server deduplicates). One second is far
// above a healthy store's Finish (a round trip, an fsync) and short next
// to what a caller waiting for an answer tolerates.
const finishTimeout = time.Second

// maxKeyLength is the longest key KeyInjector sends: Stripe's limit, the
// tightest among the common APIs.
const maxKeyLength = 255

// ErrInvalidKey is wrapped by the error KeyInjector returns when its key
// function produced a key that cannot be sent.
var ErrInvalidKey = errors.New("saferetry: invalid idempotency key")

// KeyInjector gives each logical request that needs one an idempotency key,
// so the retry layer below it can safely resend writes: every retry of the
// request carries the same key, and the server can deduplicate them. It
// never replaces a key the caller set (under Idempotency-Key,
// X-Idempotency-Key or Header), and never modifies the caller's request: it
// sends a copy with its own header map.
//
// A request that names an operation (WithOperation) gets its key from
// Store instead: the key recorded for the operation, or a fresh one the
// store records before the request is sent. Once the response is final (a
// 2xx, a 303 See Other, or a 4xx other than 408, 409, 429 and 413 with a
// Retry-After), the operation is finished in the store; after an error or
// any other status it stays pending, and sending it again, from this
// process or another sharing a durable store, sends the same key. A named
// request the store refuses is not sent: RoundTrip closes its body and
// returns an *OperationError. Requests that name no operation never touch
// the store.
//
// Store.Begin runs with the request's context, before anything is sent.
// Store.Finish runs after the final response arrived, before RoundTrip
// returns it, with a context detached from the request's cancellation and
// bounded by a timeout of its own, one second: a store that stalls holds
// a response back that long at most, and the operation stays pending.
// Stores must honour their context's deadline for these bounds to hold.
//
// A key makes retrying a write safe only when the server deduplicates by
// it; for an API that ignores the key, configure no key methods.
//
// The zero value keys POST and PATCH requests with a random UUID (version
// 4, 122 random bits) under Idempotency-Key, keeps the keys of named
// operations in memory, and sends requests through a pooled transport of
// its own. Safe for concurrent use.
type KeyInjector struct {
	// Base is the next RoundTripper. Nil means a pooled transport from
	// go-cleanhttp, created on first use.
	Base http.RoundTripper
	// Header is the header the key is sent in. Empty means
	// defaultKeyHeader.
	Header string
	// Methods lists the methods that get a key. Nil means POST and PATCH,
	// the non-idempotent methods of RFC 9110; an empty non-nil slice keys
	// nothing.
	Methods []string
	// NewKey returns a fresh key. Nil means a random UUID v4. Its result
	// must be a valid header value of at most maxKeyLength bytes.
	NewKey func() string
	// Quoted sends the key as a structured-field string ("..."), the form
	// the IETF draft (§2.1) specifies. The default is the bare key, which
	// Stripe and most deployed APIs expect.
	Quoted bool
	// Store records the keys of named operations. Nil means a
	// MemoryKeyStore of the injector's own, with its defaults (24 hours,
	// 100,000 operations), which survives no restart; the keystore module
	// has SQLite and Redis stores that do.
	Store KeyStore

	memory MemoryKeyStore
}

var _ http.RoundTripper = (*KeyInjector)(nil)

// RoundTrip implements http.RoundTripper.
func (k *KeyInjector) RoundTrip(req *http.Request) (*http.Response, error) {
	base := baseOr(k.Base)
	if !k.wantsKey(req) {
		return base.RoundTrip(req)
	}
	if op, named := operationFrom(req.Context()); named {
		return k.roundTripOperation(base, req, op)
	}
	key, err := k.newKey()
	if err != nil {
		closeBody(req.Body)
		return nil, err
	}
	return base.RoundTrip(k.withKey(req, key))
}

// roundTripOperation sends req, which names operation op, with the key
// the store has for op, and finishes the operation once its outcome is
// final.
func (k *KeyInjector) roundTripOperation(base http.RoundTripper, req *http.Request, op string) (*http.Response, error) {
	key, err := k.beginOperation(req, op)
	if err != nil {
		closeBody(req.Body)
		return nil, &OperationError{Operation: op, Err: err}
	}
	resp, err := base.RoundTrip(k.withKey(req, key))
	if err == nil && finalStatus(resp) {
		k.finishOperation(req.Context(), op, key, resp.StatusCode)
	}
	return resp, err
}

// finishOperation marks op done in the store, synchronously, within
// finishTimeout. The context keeps ctx's values but not its cancellation:
// a caller who cancels the moment the answer is in must not cost the
// operation its done mark. A failed or timed-out Finish leaves the
// operation pending. That is safe: sending it again sends the same key,
// which the server deduplicates; so the response is not withheld for it,
// and nothing is left running behind the request.
func (k *KeyInjector) finishOperation(ctx context.Context, op, key string, status int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	_ = k.store().Finish(ctx, op, key, status)
}

// beginOperation fingerprints req and returns the key recorded for op,
// raw (unquoted) and checked.
func (k *KeyInjector) beginOperation(req *http.Request, op string) (string, error) {
	fp, err := fingerprintOf(req)
	if err != nil {
		return "", err
	}
	candidate, err := k.newKey()
	if err != nil {
		return "", err
	}
	key, err := k.store().Begin(req.Context(), op, fp, candidate)
	if err != nil {
		return "", err
	}
	if err := checkKey(key); err != nil {
		return "", fmt.Errorf("the store's key: %w", err)
	}
	return key, nil
}

func (k *KeyInjector) store() KeyStore {
	if k.Store != nil {
		return k.Store
	}
	return &k.memory
}

// withKey returns a shallow copy of req with its own header map carrying
// the raw key, quoted if so configured.
func (k *KeyInjector) withKey(req *http.Request, key string) *http.Request {
	if k.Quoted {
		key = `"` + key + `"`
	}
	// One allocation holds the copy and the header value's backing array.
	kr := &keyedRequest{req: *req, value: [1]string{key}}
	kr.req.Header = req.Header.Clone()
	if kr.req.Header == nil {
		kr.req.Header = make(http.Header, 1)
	}
	kr.req.Header[k.headerName()] = kr.value[:]
	return &kr.req
}

// keyedRequest is a request copy and its key header's value, allocated
// together.
type keyedRequest struct {
	req   http.Request
	value [1]string
}

// CloseIdleConnections forwards to the base transport.
func (k *KeyInjector) CloseIdleConnections() {
	closeIdleConnections(baseOr(k.Base))
}

func (k *KeyInjector) headerName() string {
	if k.Header == "" {
		return defaultKeyHeader
	}
	return http.CanonicalHeaderKey(k.Header)
}

// wantsKey reports whether req's method is keyed and it has no key yet.
func (k *KeyInjector) wantsKey(req *http.Request) bool {
	if !k.keysMethod(req) {
		return false
	}
	return keyOf(req.Header, k.Header) == ""
}

func (k *KeyInjector) keysMethod(req *http.Request) bool {
	methods, method := k.Methods, req.Method
	if ro := overridesFrom(req.Context()); ro != nil && ro.keyMethodsSet {
		methods = ro.keyMethods // WithRequestOptions(ctx, WithKeyMethods(...))
	}
	if methods == nil {
		return method == http.MethodPost || method == http.MethodPatch
	}
	for _, m := range methods {
		if m == method {
			return true
		}
	}
	return false
}

// newKey makes and checks a fresh key, unquoted.
func (k *KeyInjector) newKey() (string, error) {
	var key string
	if k.NewKey != nil {
		key = k.NewKey()
	} else {
		key = newUUID()
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// checkKey rejects keys a server could not store or that would corrupt
// the request: empty, too long, or with characters outside visible ASCII
// (which also keeps the quoted form a valid structured-field string).
func checkKey(key string) error {
	if key == "" || len(key) > maxKeyLength {
		return fmt.Errorf("%w: length %d is outside 1..%d", ErrInvalidKey, len(key), maxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%w: byte %#x at offset %d; keys must be visible ASCII without quotes or backslashes", ErrInvalidKey, c, i)
		}
	}
	return nil
}

// newUUID returns a random (version 4) UUID, as uuid.NewString does, with
// the random bytes kept on the stack: one allocation, the string.
func newUUID() string {
	var u uuid.UUID
	if _, err := rand.Read(u[:]); err != nil {
		// crypto/rand.Read does not fail on supported platforms (Go 1.24+
		// crashes the program rather than return an error).
		panic("saferetry: crypto/rand failed: " + err.Error())
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant RFC 9562
	return u.String()
}
