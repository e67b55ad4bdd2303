package keystore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/redistest"
	"github.com/saferetry/saferetry/keystore/redisstore"
	"github.com/saferetry/saferetry/keystore/sqlitestore"
)

var benchRuns atomic.Int64 // keeps operation names unique across runs

// BenchmarkDurableKey measures what a durable key adds to a request: a
// POST through the full stack to a loopback server, unnamed (the
// baseline: a key in memory for the request's retries only) and named,
// with each store. Every named request is a new operation: Begin records
// it, Finish marks it done.
func BenchmarkDurableKey(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	body := []byte(`{"order":"1001","amount":4200,"currency":"eur"}`)

	stores := []struct {
		name  string
		open  func(b *testing.B) saferetry.KeyStore
		named bool
	}{
		{name: "unnamed", open: func(*testing.B) saferetry.KeyStore { return nil }},
		{name: "memory", named: true, open: func(*testing.B) saferetry.KeyStore { return &saferetry.MemoryKeyStore{} }},
		{name: "sqlite", named: true, open: func(b *testing.B) saferetry.KeyStore {
			s, err := sqlitestore.Open(filepath.Join(b.TempDir(), "keys.db"), sqlitestore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{name: "redis", named: true, open: func(b *testing.B) saferetry.KeyStore {
			client := redis.NewClient(&redis.Options{Addr: redistest.Start(b), ContextTimeoutEnabled: true})
			b.Cleanup(func() { client.Close() })
			return redisstore.New(client, redisstore.Options{})
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			var opts []saferetry.Option
			if store := st.open(b); store != nil {
				opts = append(opts, saferetry.WithKeyStore(store))
			}
			stack := saferetry.New(nil, opts...)
			defer stack.CloseIdleConnections()
			run := benchRuns.Add(1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ctx := context.Background()
				if st.named {
					ctx = saferetry.WithOperation(ctx, fmt.Sprintf("bench/%d/%d", run, i))
					i++
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(body))
				resp, err := stack.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
