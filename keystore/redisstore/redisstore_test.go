package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/redistest"
	"github.com/saferetry/saferetry/keystore/internal/stalltest"
	"github.com/saferetry/saferetry/keystore/keystoretest"
)

// newClient connects to a fresh redis-server, closed when the test ends.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	return client
}

func TestContract(t *testing.T) {
	client := newClient(t)
	keystoretest.Run(t, func(t *testing.T) saferetry.KeyStore {
		// One server, a namespace per subtest; the prefixes have spaces,
		// slashes, glob characters and a byte that is not UTF-8, which
		// the SCAN pattern must match literally.
		return New(client, Options{Prefix: "test*[\xe9" + t.Name() + "]:"})
	})
}

func TestRecordsExpireWithTheTTL(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	s := New(client, Options{TTL: time.Hour})
	fp := keystoretest.Fingerprint("POST", "https://api.test/v1/charges", "x")
	if _, err := s.Begin(ctx, "op", fp, "k1"); err != nil {
		t.Fatal(err)
	}
	ttl := client.PTTL(ctx, DefaultPrefix+"op").Val()
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TTL %v after Begin, want about an hour", ttl)
	}
	if err := s.Finish(ctx, "op", "k1", 201); err != nil {
		t.Fatal(err)
	}
	if after := client.PTTL(ctx, DefaultPrefix+"op").Val(); after <= 0 || after > ttl {
		t.Fatalf("TTL %v after Finish (was %v): Finish must keep it", after, ttl)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(client.Get(ctx, DefaultPrefix+"op").Val()), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["key"] != "k1" || rec["state"] != "done" || rec["status"] != 201.0 || rec["fingerprint"] != fp.String() {
		t.Fatalf("record after Finish: %v", rec)
	}
	// What expiry does, Redis does: with the record gone, the name is free.
	client.Del(ctx, DefaultPrefix+"op")
	if k, err := s.Begin(ctx, "op", fp, "k2"); k != "k2" || err != nil {
		t.Fatalf("after expiry: %q, %v; want a new key", k, err)
	}
	if d := New(client, Options{}); d.ttl != saferetry.DefaultOperationTTL || d.prefix != DefaultPrefix {
		t.Fatalf("defaults: %v %q", d.ttl, d.prefix)
	}
}

func TestPendingReadsInBatches(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	s := New(client, Options{})
	const n = 2*scanBatch + 7
	for i := range n {
		if _, err := s.Begin(ctx, fmt.Sprint("op-", i), keystoretest.Fingerprint("POST", "u", ""), fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Finish(ctx, "op-0", "k0", 200)
	client.Set(ctx, "unrelated:key", "not json", 0)
	p, err := s.Pending(ctx)
	if err != nil || len(p) != n-1 {
		t.Fatalf("%d pending, %v; want %d", len(p), err, n-1)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	s := New(client, Options{})
	client.Set(ctx, DefaultPrefix+"garbled", "not json", 0)
	fp := keystoretest.Fingerprint("POST", "u", "")
	if _, err := s.Begin(ctx, "garbled", fp, "k"); err == nil {
		t.Fatal("a garbled record was accepted")
	}
	if _, err := s.Pending(ctx); err == nil {
		t.Fatal("a garbled record was listed")
	}
	client.Close()
	if _, err := s.Begin(ctx, "op", fp, "k"); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("Begin on a closed client: %v", err)
	}
	if err := s.Finish(ctx, "op", "k", 200); err == nil {
		t.Fatal("Finish on a closed client succeeded")
	}
}

// go-redis ignores a context's deadline unless the client enables it:
// a Redis that stops answering would hold Finish, and the response behind
// it, for the client's ReadTimeout (5 s by default). New refuses such a
// client, loudly, at startup.
func TestNewRefusesAClientThatIgnoresContexts(t *testing.T) {
	clients := map[string]redis.UniversalClient{
		"Client":        redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		"ClusterClient": redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
		"Ring":          redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}),
	}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			defer client.Close()
			defer func() {
				r := recover()
				if msg := fmt.Sprint(r); r == nil || !strings.HasPrefix(msg, "redisstore: ") || !strings.Contains(msg, "ContextTimeoutEnabled") {
					t.Fatalf("panic %v; want one naming ContextTimeoutEnabled", r)
				}
			}()
			New(client, Options{})
		})
	}
	ok := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	New(ok, Options{}) // must not panic
}

// A Redis that accepts connections but never answers: every call returns
// once its context's deadline passes, well before the client's own read
// timeout (none here), with the context's error.
func TestHonoursTheContextWhenRedisIsSilent(t *testing.T) {
	addr, unblock := redistest.Silent(t)
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true,
		ReadTimeout: -1, WriteTimeout: -1, DialTimeout: time.Hour, PoolTimeout: time.Hour, MaxRetries: -1})
	defer client.Close()
	s := New(client, Options{})
	fp := keystoretest.Fingerprint("POST", "https://api.test/", "x")
	calls := map[string]func(context.Context) error{
		"Begin":   func(ctx context.Context) error { _, err := s.Begin(ctx, "op", fp, "k"); return err },
		"Finish":  func(ctx context.Context) error { return s.Finish(ctx, "op", "k", 201) },
		"Pending": func(ctx context.Context) error { _, err := s.Pending(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			stalltest.ReturnsByDeadline(t, call, unblock)
		})
	}
}
