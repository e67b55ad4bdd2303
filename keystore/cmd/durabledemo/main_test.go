package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo's story, in one process: a run "crashes" (its context ends)
// right after the API charged the order and dropped the answer; the next
// run resumes the operation. With SQLite there is one charge, and a third
// run sends nothing; with memory keys, two charges.
func TestDemo(t *testing.T) {
	for _, tt := range []struct {
		store       string
		wantCharges string
		wantSecond  string
	}{
		{store: "sqlite", wantCharges: "charged 1 time(s)", wantSecond: "201 Created"},
		{store: "memory", wantCharges: "DOUBLE CHARGE", wantSecond: "201 Created"},
	} {
		t.Run(tt.store, func(t *testing.T) {
			cfg := config{dir: t.TempDir(), store: tt.store, addr: freeAddr(t), order: "1001", fail: 3, retryAfter: time.Second}

			ctx, crash := context.WithCancel(context.Background())
			cfg.afterDrop = crash
			var out bytes.Buffer
			if err := run(ctx, cfg, &out); err == nil {
				t.Fatalf("the crashed run succeeded:\n%s", &out)
			}
			t.Logf("first run:\n%s", &out)

			cfg.fail, cfg.afterDrop = 0, nil
			out.Reset()
			if err := run(context.Background(), cfg, &out); err != nil {
				t.Fatalf("%v\n%s", err, &out)
			}
			t.Logf("second run:\n%s", &out)
			if !strings.Contains(out.String(), tt.wantSecond) || !strings.Contains(out.String(), tt.wantCharges) {
				t.Fatalf("second run printed:\n%s\nwant %q and %q", &out, tt.wantSecond, tt.wantCharges)
			}
			if tt.store != "sqlite" {
				return
			}
			if !strings.Contains(out.String(), "never finished") || !strings.Contains(out.String(), "replayed") {
				t.Fatalf("the second run did not resume the pending charge:\n%s", &out)
			}
			out.Reset()
			if err := run(context.Background(), cfg, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "already completed") || !strings.Contains(out.String(), "charged 1 time(s)") {
				t.Fatalf("third run printed:\n%s", &out)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
