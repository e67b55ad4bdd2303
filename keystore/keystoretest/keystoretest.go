// Package keystoretest checks that a saferetry.KeyStore keeps the
// contract KeyInjector relies on, so every store answers alike.
package keystoretest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
)

// Run checks the store open returns, in subtests; open is called once per
// subtest and must return an empty store (closed by open's own Cleanup).
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
			if j < 0 || rec.Key != fmt.Sprint("key-", j) || rec.Fingerprint != want || rec.Done() {
				t.Errorf("record %+v", rec)
			}
			if rec.Created.Before(start.Add(-time.Second)) || rec.Created.After(time.Now().Add(time.Second)) {
				t.Errorf("record %q created at %v, began at %v", rec.Operation, rec.Created, start)
			}
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
// URL and body.
func Fingerprint(method, url, body string) saferetry.Fingerprint {
	return saferetry.Fingerprint{Method: method, URL: url, BodySHA256: sha256.Sum256([]byte(body))}
}

func mustBegin(t *testing.T, s saferetry.KeyStore, op string, fp saferetry.Fingerprint, candidate, want string) {
	t.Helper()
	key, err := s.Begin(context.Background(), op, fp, candidate)
	if err != nil || key != want {
		t.Fatalf("Begin(%q, candidate %q) = %q, %v; want %q", op, candidate, key, err, want)
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
