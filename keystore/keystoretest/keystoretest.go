// Package keystoretest checks that a saferetry.KeyStore keeps the
// contract KeyInjector relies on, so every store answers alike.
package keystoretest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
)

// Run checks the store open returns, in subtests; open is called once per
// subtest and must return an empty store (closed by open's own Cleanup).
// Among them, operations whose names, URLs and bodies hold bytes that are
// not UTF-8, NUL bytes and 64 KiB of text must be kept exactly: resumed,
// listed and finished as themselves.
// TTL expiry is left to each store's own tests: how to move a store's
// clock is the store's business.
func Run(t *testing.T, open func(t *testing.T) saferetry.KeyStore) {
	ctx := context.Background()
	charge := Fingerprint("POST", "https://api.test/v1/charges", `{"amount":4200}`)

	t.Run("a new operation is recorded with the candidate key", func(t *testing.T) {
		s := open(t)
		mustBegin(t, s, "op", charge, "k1", "k1")
		mustBegin(t, s, "op", charge, "k2", "k1")
		mustBegin(t, s, "other", charge, "k3", "k3")
	})

	t.Run("another request under the same name is refused", func(t *testing.T) {
		s := open(t)
		mustBegin(t, s, "op", charge, "k1", "k1")
		for _, fp := range []saferetry.Fingerprint{
			Fingerprint("POST", "https://api.test/v1/charges", `{"amount":1}`),
			Fingerprint("POST", "https://api.test/v1/refunds", `{"amount":4200}`),
			Fingerprint("PATCH", "https://api.test/v1/charges", `{"amount":4200}`),
		} {
			if key, err := s.Begin(ctx, "op", fp, "k2"); !errors.Is(err, saferetry.ErrFingerprintMismatch) {
				t.Errorf("Begin with %v: %q, %v; want ErrFingerprintMismatch", fp, key, err)
			}
		}
		mustBegin(t, s, "op", charge, "k3", "k1")
	})

	t.Run("a finished operation is no longer pending and is not begun again", func(t *testing.T) {
		s := open(t)
		mustBegin(t, s, "op", charge, "k1", "k1")
		mustBegin(t, s, "left", charge, "k2", "k2")
		if err := s.Finish(ctx, "op", "k1", 201); err != nil {
			t.Fatal(err)
		}
		if got := pendingNames(t, s); !slices.Equal(got, []string{"left"}) {
			t.Fatalf("pending %v, want [left]", got)
		}
		if key, err := s.Begin(ctx, "op", charge, "k3"); !errors.Is(err, saferetry.ErrOperationDone) {
			t.Fatalf("Begin of a done operation: %q, %v; want ErrOperationDone", key, err)
		}
		other := Fingerprint("POST", "https://api.test/v1/charges", `{"amount":1}`)
		if key, err := s.Begin(ctx, "op", other, "k3"); !errors.Is(err, saferetry.ErrFingerprintMismatch) {
			t.Fatalf("Begin of a done operation with another request: %q, %v; want ErrFingerprintMismatch", key, err)
		}
	})

	t.Run("finish ignores another key and unknown operations", func(t *testing.T) {
		s := open(t)
		mustBegin(t, s, "op", charge, "k1", "k1")
		if err := s.Finish(ctx, "op", "not-k1", 201); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, "unknown", "k", 201); err != nil {
			t.Fatalf("Finish of an unknown operation: %v", err)
		}
		if got := pendingNames(t, s); !slices.Equal(got, []string{"op"}) {
			t.Fatalf("pending %v, want [op]", got)
		}
	})

	t.Run("pending lists whole records, oldest first", func(t *testing.T) {
		s := open(t)
		start := time.Now()
		names := []string{"webhook/4711", "a", `odd name: *?[x]\ "quoted" 'single' %s ü`}
		for i, op := range names {
			fp := Fingerprint("POST", fmt.Sprint("https://api.test/", i), op)
			mustBegin(t, s, op, fp, fmt.Sprint("key-", i), fmt.Sprint("key-", i))
		}
		p, err := s.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != len(names) {
			t.Fatalf("pending %+v, want %d records", p, len(names))
		}
		for i, rec := range p {
			if i > 0 && rec.Created.Before(p[i-1].Created) {
				t.Errorf("record %d created before record %d", i, i-1)
			}
			j := slices.Index(names, rec.Operation)
			want := Fingerprint("POST", fmt.Sprint("https://api.test/", j), rec.Operation)
			if j < 0 || rec.Key != fmt.Sprint("key-", j) || rec.Fingerprint != want || rec.Finished() {
				t.Errorf("record %+v", rec)
			}
			if rec.Created.Before(start.Add(-time.Second)) || rec.Created.After(time.Now().Add(time.Second)) {
				t.Errorf("record %q created at %v, began at %v", rec.Operation, rec.Created, start)
			}
		}
	})

	t.Run("hostile names, URLs and bodies are kept exactly", func(t *testing.T) {
		s := open(t)
		ops := hostile()
		for i, h := range ops {
			mustBegin(t, s, h.name, h.fp, fmt.Sprint("key-", i), fmt.Sprint("key-", i))
		}
		for i, h := range ops {
			// Resumed: read back, the record matches the request.
			mustBegin(t, s, h.name, h.fp, "another", fmt.Sprint("key-", i))
		}
		p, err := s.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != len(ops) {
			t.Fatalf("%d pending, want %d: names or records were merged or lost", len(p), len(ops))
		}
		for _, rec := range p {
			i := slices.IndexFunc(ops, func(h hostileOp) bool { return h.name == rec.Operation })
			if i < 0 {
				t.Errorf("pending lists %q (%d bytes), a name never begun", clip(rec.Operation), len(rec.Operation))
				continue
			}
			if rec.Key != fmt.Sprint("key-", i) || rec.Fingerprint != ops[i].fp || rec.Finished() {
				t.Errorf("record of %q: key %q, fingerprint %v; want key-%d, %v", clip(rec.Operation), rec.Key, rec.Fingerprint, i, ops[i].fp)
			}
		}
		for i, h := range ops {
			if err := s.Finish(ctx, h.name, fmt.Sprint("key-", i), 201); err != nil {
				t.Fatalf("Finish %q: %v", clip(h.name), err)
			}
			if key, err := s.Begin(ctx, h.name, h.fp, "again"); !errors.Is(err, saferetry.ErrOperationDone) {
				t.Errorf("Begin of %q once done: %q, %v; want ErrOperationDone", clip(h.name), key, err)
			}
		}
		if got := pendingNames(t, s); len(got) != 0 {
			t.Fatalf("%d still pending after every Finish", len(got))
		}
	})

	t.Run("concurrent begins agree on one key", func(t *testing.T) {
		s := open(t)
		const n = 16
		keys := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				key, err := s.Begin(ctx, "op", charge, fmt.Sprint("candidate-", i))
				if err != nil {
					t.Error(err)
				}
				keys[i] = key
			})
		}
		wg.Wait()
		for _, k := range keys {
			if k != keys[0] {
				t.Fatalf("keys %v, want one", keys)
			}
		}
	})
}

// Fingerprint returns the fingerprint of a request with the given method,
// URL and body. The URL is taken as KeyInjector takes it, in the form
// url.URL.Redacted writes (no password), and hashed byte for byte.
func Fingerprint(method, url, body string) saferetry.Fingerprint {
	return saferetry.Fingerprint{Method: method, URLSHA256: sha256.Sum256([]byte(url)), BodySHA256: sha256.Sum256([]byte(body))}
}

// hostileOp is an operation whose name, URL or body a lossy encoding
// would change: invalid UTF-8, NUL bytes, very long values. Names that
// differ only where an encoding would replace bytes (é in Latin-1, and
// the U+FFFD that JSON writes in its place) must stay two operations.
type hostileOp struct {
	name string
	fp   saferetry.Fingerprint
}

func hostile() []hostileOp {
	long := strings.Repeat("x", 64<<10)
	return []hostileOp{
		{"caf\xe9", Fingerprint("POST", "https://api.test/charges?q=caf\xe9", "")},
		{"caf\ufffd", Fingerprint("POST", "https://api.test/charges?q=caf\ufffd", "")},
		{"nul\x00byte", Fingerprint("POST", "https://api.test/charges?q=nul\x00byte", "body\x00with nul")},
		{"\x00", Fingerprint("PATCH", "https://api.test/\x00", "\x00")},
		{"\xff\xfe\xfd", Fingerprint("POST", "https://api.test/\xff\xfe\xfd", "\xff\xfe\xfd")},
		{"long/" + long, Fingerprint("POST", "https://api.test/long?"+long, long)},
		{"long/" + long + "\xe9", Fingerprint("POST", "https://api.test/long?"+long+"\xe9", long+"\xe9")},
		{`*?[x]\ "q" %s`, Fingerprint("POST", "https://api.test/*?[x]", "")},
	}
}

// clip shortens a name for a message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func mustBegin(t *testing.T, s saferetry.KeyStore, op string, fp saferetry.Fingerprint, candidate, want string) {
	t.Helper()
	key, err := s.Begin(context.Background(), op, fp, candidate)
	if err != nil || key != want {
		t.Fatalf("Begin(%q, candidate %q) = %q, %v; want %q", clip(op), candidate, key, err, want)
	}
}

func pendingNames(t *testing.T, s saferetry.KeyStore) []string {
	t.Helper()
	p, err := s.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rec := range p {
		names = append(names, rec.Operation)
	}
	return names
}
