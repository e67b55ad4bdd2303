package sqlitestore

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/keystore/internal/stalltest"
	"github.com/saferetry/saferetry/keystore/keystoretest"
)

func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "keys.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) saferetry.KeyStore { return openTemp(t, Options{}) })
}

func TestPragmas(t *testing.T) {
	s := openTemp(t, Options{BusyTimeout: 3 * time.Second})
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "busy_timeout": "3000"} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
		}
	}
}

// clock is a settable time source for a Store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

func TestTTL(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{TTL: time.Hour})
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	s.now = c.Now
	fp := keystoretest.Fingerprint("POST", "https://api.test/", "x")
	begin := func(op, candidate string) (string, error) { return s.Begin(ctx, op, fp, candidate) }

	begin("pending", "p1")
	begin("done", "d1")
	s.Finish(ctx, "done", "d1", 200)
	c.Advance(59 * time.Minute)
	if k, err := begin("pending", "p2"); k != "p1" || err != nil {
		t.Fatalf("within the TTL: %q, %v", k, err)
	}
	if _, err := begin("done", "d2"); !errors.Is(err, saferetry.ErrOperationDone) {
		t.Fatalf("done within the TTL: %v", err)
	}
	c.Advance(time.Minute)
	if p, _ := s.Pending(ctx); len(p) != 0 {
		t.Fatalf("expired operations listed: %+v", p)
	}
	s.Finish(ctx, "pending", "p1", 200) // expired: must not revive it
	if k, err := begin("pending", "p3"); k != "p3" || err != nil {
		t.Fatalf("past the TTL: %q, %v; want a new key", k, err)
	}
	var rows int
	s.db.QueryRow(`SELECT count(*) FROM pending_operations`).Scan(&rows)
	if rows != 1 {
		t.Fatalf("%d rows; expired ones must be pruned", rows)
	}
}

// Two Stores on one file stand for two processes sharing it.
func TestTwoHandlesShareOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	var stores [2]*Store
	for i := range stores {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	fp := keystoretest.Fingerprint("POST", "https://api.test/", "x")
	var wg sync.WaitGroup
	keys := make([]string, 20)
	for i := range keys {
		wg.Go(func() {
			k, err := stores[i%2].Begin(ctx, "op", fp, time.Now().String())
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("keys %v, want one", keys)
		}
	}
	if err := stores[1].Finish(ctx, "op", keys[0], 201); err != nil {
		t.Fatal(err)
	}
	if p, _ := stores[0].Pending(ctx); len(p) != 0 {
		t.Fatalf("the other handle still sees %+v pending", p)
	}
}

func TestOpenFails(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "dir", "keys.db"), Options{}); err == nil {
		t.Fatal("opened a file in a directory that does not exist")
	}
}

func TestPathWithQueryCharacters(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "odd?name#1.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Begin(context.Background(), "op", keystoretest.Fingerprint("POST", "u", ""), "k"); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "odd?name#1.db")); len(m) != 1 {
		t.Fatalf("file not created under its name: %v", m)
	}
}

// Another process holds the file's write lock: Begin and Finish give up
// when their context's deadline passes, not after the busy timeout (an
// hour here), and the store works again once the lock is released.
func TestHonoursTheContextWhenLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{BusyTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	fp := keystoretest.Fingerprint("POST", "https://api.test/", "x")
	if _, err := s.Begin(ctx, "op", fp, "k"); err != nil {
		t.Fatal(err)
	}
	lock, err := other.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { lock.Rollback() }) }
	defer release()
	calls := map[string]func(context.Context) error{
		"Begin":  func(ctx context.Context) error { _, err := s.Begin(ctx, "new", fp, "k2"); return err },
		"Finish": func(ctx context.Context) error { return s.Finish(ctx, "op", "k", 201) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { stalltest.ReturnsByDeadline(t, call, release) })
	}
	release()
	if err := s.Finish(ctx, "op", "k", 201); err != nil {
		t.Fatalf("Finish once the lock is released: %v", err)
	}
	if _, err := s.Begin(ctx, "op", fp, "k3"); !errors.Is(err, saferetry.ErrOperationDone) {
		t.Fatalf("Begin after the Finish: %v; want ErrOperationDone", err)
	}
}

// A file whose names were written as TEXT, as earlier versions did, keeps
// its operations: they are resumed with their keys, not begun anew.
func TestOpenConvertsTextNames(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fp := keystoretest.Fingerprint("POST", "https://api.test/", "x")
	text, _ := fp.MarshalText()
	if _, err := s.db.Exec(`INSERT INTO pending_operations (operation, "key", fingerprint, created) VALUES (?, 'old-key', ?, ?)`,
		"charge/caf\xe9", string(text), time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openPath(t, path)
	if key, err := s.Begin(ctx, "charge/caf\xe9", fp, "new-key"); key != "old-key" || err != nil {
		t.Fatalf("Begin: %q, %v; want the operation resumed with old-key", key, err)
	}
	if p, err := s.Pending(ctx); err != nil || len(p) != 1 {
		t.Fatalf("pending %+v, %v; want the one operation", p, err)
	}
}

func openPath(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
