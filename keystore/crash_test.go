package keystore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/redistest"
	"github.com/saferetry/saferetry/keystore/keystoretest"
)

// The crash tests run this test binary again as a child process that
// sends one named charge through saferetry, kill it with SIGKILL while the
// server holds the request, and run it again.
const (
	childStoreEnv = "SAFERETRY_CRASH_CHILD_STORE" // the store spec, see openStore
	childURLEnv   = "SAFERETRY_CRASH_CHILD_URL"
	chargeOp      = "charge/order-1001"
	chargeBody    = `{"order":"1001","amount":4200,"currency":"eur"}`
)

// TestHelperProcess is the child: it does nothing unless run by a crash
// test, and then exits without returning.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(childStoreEnv)
	if spec == "" {
		return
	}
	os.Exit(sendCharge(spec, os.Getenv(childURLEnv)))
}

// sendCharge is the child's work: open the store, send the charge, print
// the outcome.
func sendCharge(spec, url string) int {
	store, closeStore, err := openStore(spec)
	if err != nil {
		fmt.Println("store:", err)
		return 2
	}
	defer closeStore()
	stack := saferetry.New(nil, saferetry.WithKeyStore(store), saferetry.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	defer stack.CloseIdleConnections()
	ctx := saferetry.WithOperation(context.Background(), chargeOp)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chargeBody))
	if err != nil {
		fmt.Println(err)
		return 2
	}
	resp, err := stack.RoundTrip(req)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	return 0
}

// chargeServer deduplicates charges by Idempotency-Key, as a payments API
// does. The first request it ever gets is charged and then never
// answered: the client crashes waiting, not knowing whether it was
// charged.
type chargeServer struct {
	*httptest.Server
	arrived chan struct{} // closed once the first request is charged
	release chan struct{} // closed at cleanup, ends the hung handler

	mu      sync.Mutex
	keys    []string          // the key of every request, in order
	charges map[string]string // key -> charge id: the side effects
}

func newChargeServer(t *testing.T) *chargeServer {
	s := &chargeServer{arrived: make(chan struct{}), release: make(chan struct{}), charges: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) }) // runs first
	return s
}

func (s *chargeServer) serve(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	s.keys = append(s.keys, key)
	first := len(s.keys) == 1
	id, seen := s.charges[key]
	if !seen || key == "" {
		id = fmt.Sprint("ch_", len(s.charges)+1)
		s.charges[key] = id
	}
	s.mu.Unlock()
	if first {
		close(s.arrived)
		select { // charged; the answer never comes
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, id)
}

func (s *chargeServer) seen() (keys []string, charges int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...), len(s.charges)
}

// child starts the helper process against srv with the given store.
func child(t *testing.T, spec, url string) (cmd *exec.Cmd, out *bytes.Buffer, exited chan error) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childStoreEnv+"="+spec, childURLEnv+"="+url,
		// A -race binary sleeps 1s at exit unless told not to.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	out = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, out, exited
}

// crashAndResume kills a child mid-request and runs another; it returns
// the keys the server saw and how many charges it made.
func crashAndResume(t *testing.T, spec string) (keys []string, charges int, resumed string) {
	srv := newChargeServer(t)

	cmd, out, exited := child(t, spec, srv.URL)
	select {
	case <-srv.arrived:
	case err := <-exited:
		t.Fatalf("the first child exited before its request arrived (%v):\n%s", err, out)
	case <-time.After(time.Minute): // a safety net, not the signal
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the first child's request never arrived:\n%s", out)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no cleanup
		t.Fatal(err)
	}
	<-exited

	_, out, exited = child(t, spec, srv.URL)
	if err := <-exited; err != nil {
		t.Fatalf("the second child failed (%v):\n%s", err, out)
	}
	keys, charges = srv.seen()
	return keys, charges, strings.TrimSpace(out.String())
}

func testCrash(t *testing.T, spec string) {
	keys, charges, out := crashAndResume(t, spec)
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("keys %q: the resumed charge must carry the first one's key", keys)
	}
	if charges != 1 || out != "201 ch_1" {
		t.Fatalf("%d charges, the resumed child printed %q; want one charge, 201 ch_1", charges, out)
	}
	if p := pending(t, spec); len(p) != 0 {
		t.Fatalf("still pending after the 201: %+v", p)
	}
}

func TestCrashMidRequestSQLite(t *testing.T) {
	testCrash(t, "sqlite:"+filepath.Join(t.TempDir(), "keys.db"))
}

func TestCrashMidRequestRedis(t *testing.T) {
	testCrash(t, "redis:"+redistest.Start(t))
}

// The control: without a durable store the restarted process cannot know
// the first key, and the server charges twice. It shows the crash tests
// above can fail.
func TestCrashMidRequestMemoryChargesTwice(t *testing.T) {
	keys, charges, _ := crashAndResume(t, "memory:")
	if len(keys) != 2 || keys[0] == keys[1] || charges != 2 {
		t.Fatalf("keys %q, %d charges; want two keys, two charges", keys, charges)
	}
}

// Between the crash and the restart, the operation is on record, with the
// key the server saw: it was written before the first byte was sent.
func TestCrashLeavesTheOperationPending(t *testing.T) {
	spec := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	srv := newChargeServer(t)
	cmd, out, exited := child(t, spec, srv.URL)
	select {
	case <-srv.arrived:
	case err := <-exited:
		t.Fatalf("the child exited before its request arrived (%v):\n%s", err, out)
	}
	cmd.Process.Kill()
	<-exited
	p := pending(t, spec)
	keys, _ := srv.seen()
	if len(p) != 1 || p[0].Operation != chargeOp || p[0].Key != keys[0] || p[0].Fingerprint != keystoretest.Fingerprint(http.MethodPost, srv.URL, chargeBody) {
		t.Fatalf("pending %+v, server saw key %q", p, keys[0])
	}
}
