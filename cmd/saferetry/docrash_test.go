package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/saferetry/saferetry/internal/redistest"
)

// The crash tests run this test binary again as a child process that runs
// "saferetry do" with the arguments in childArgsEnv, kill it with SIGKILL
// while the server holds its request, and run it again.
const (
	childArgsEnv = "SAFERETRY_DO_CHILD_ARGS" // JSON array of do's arguments
	chargeBody   = `{"order":"1001","amount":4200,"currency":"eur"}`
)

// TestDoHelperProcess is the child: it does nothing unless run by a crash
// test, and then runs the command as main does and exits.
func TestDoHelperProcess(t *testing.T) {
	raw := os.Getenv(childArgsEnv)
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad", childArgsEnv, err)
		os.Exit(100)
	}
	os.Exit(run(context.Background(), append([]string{"do"}, args...), os.Stdout, os.Stderr))
}

// chargeServer deduplicates charges by Idempotency-Key, as a payments API
// does. The first request it ever gets is charged and then never
// answered: the client is killed waiting, not knowing whether it was
// charged.
type chargeServer struct {
	*httptest.Server
	arrived chan struct{} // closed once the first request is charged
	release chan struct{} // closed at cleanup, ends the hung handler

	mu      sync.Mutex
	keys    []string          // the key of every request, in order
	bodies  []string          // and its body
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
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.bodies = append(s.bodies, string(body))
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

func (s *chargeServer) seen() (keys, bodies []string, charges int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...), append([]string(nil), s.bodies...), len(s.charges)
}

// child starts "saferetry do args..." in a child process.
func child(t *testing.T, args ...string) (cmd *exec.Cmd, stdout, stderr *bytes.Buffer, exited chan error) {
	t.Helper()
	enc, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(os.Args[0], "-test.run=^TestDoHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+string(enc),
		// A -race binary sleeps 1s at exit unless told not to.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, stdout, stderr, exited
}

// runChild runs "saferetry do args..." in a child process to its end.
func runChild(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	_, out, errOut, exited := child(t, args...)
	err := <-exited
	var xerr *exec.ExitError
	if err != nil && !errors.As(err, &xerr) {
		t.Fatalf("the child did not run: %v", err)
	}
	if xerr != nil {
		code = xerr.ExitCode()
	}
	return code, out.String(), errOut.String()
}

// crashAndRerun runs "saferetry do" in a child against a charge server,
// kills it with SIGKILL once the server has charged its request, and runs
// it again with the same arguments. It returns the keys and bodies the
// server saw, the charges it made, and the second run's outcome.
func crashAndRerun(t *testing.T, srv *chargeServer, args ...string) (keys, bodies []string, charges, code int, out, errOut string) {
	t.Helper()
	cmd, cout, cerr, exited := child(t, args...)
	select {
	case <-srv.arrived:
	case err := <-exited:
		t.Fatalf("the first run exited before its request arrived (%v):\n%s%s", err, cout, cerr)
	case <-time.After(time.Minute): // a safety net, not the signal
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the first run's request never arrived:\n%s%s", cout, cerr)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no cleanup
		t.Fatal(err)
	}
	<-exited

	code, out, errOut = runChild(t, args...)
	keys, bodies, charges = srv.seen()
	return keys, bodies, charges, code, out, errOut
}

func testDoCrash(t *testing.T, store string) {
	srv := newChargeServer(t)
	args := []string{"--operation", "charge/order-1001", "--store", store,
		"-H", "Content-Type: application/json", "-d", chargeBody, srv.URL + "/v1/charges"}
	keys, bodies, charges, code, out, errOut := crashAndRerun(t, srv, args...)
	if code != 0 || out != "ch_1" {
		t.Fatalf("the rerun exited %d with stdout %q, want 0 and ch_1; stderr:\n%s", code, out, errOut)
	}
	if len(keys) != 2 || keys[0] == "" || keys[1] != keys[0] {
		t.Fatalf("keys %q: the rerun must send the killed run's key", keys)
	}
	if charges != 1 || bodies[0] != chargeBody || bodies[1] != chargeBody {
		t.Fatalf("%d charges, bodies %q; want one charge, the same body twice", charges, bodies)
	}

	// The 201 finished the operation: a third run sends nothing.
	code, out, errOut = runChild(t, args...)
	if code != 2 || out != "" || !strings.Contains(errOut, "operation already completed") || !strings.Contains(errOut, "nothing was sent") {
		t.Fatalf("a run of the finished operation exited %d, stdout %q, stderr %q; want 2, nothing sent", code, out, errOut)
	}
	if keys, _, _ := srv.seen(); len(keys) != 2 {
		t.Fatalf("a run of the finished operation reached the server (%d requests)", len(keys))
	}
}

func TestDoCrashMidWriteSQLite(t *testing.T) {
	testDoCrash(t, "sqlite:"+filepath.Join(t.TempDir(), "keys.db"))
}

func TestDoCrashMidWriteRedis(t *testing.T) {
	testDoCrash(t, "redis://"+redistest.Start(t))
}

// The control: without --operation the rerun cannot know the killed run's
// key, and the server charges twice. It shows the crash tests above can
// fail.
func TestDoCrashWithoutOperationChargesTwice(t *testing.T) {
	srv := newChargeServer(t)
	keys, _, charges, code, out, errOut := crashAndRerun(t, srv, "-d", chargeBody, srv.URL+"/v1/charges")
	if code != 0 || out != "ch_2" {
		t.Fatalf("the rerun exited %d with stdout %q, want 0 and ch_2; stderr:\n%s", code, out, errOut)
	}
	if len(keys) != 2 || keys[0] == "" || keys[1] == "" || keys[0] == keys[1] || charges != 2 {
		t.Fatalf("keys %q, %d charges; want two keys, two charges", keys, charges)
	}
}

// A named write whose body changed between runs is refused: one name never
// covers two different writes.
func TestDoOperationRefusesAnotherRequest(t *testing.T) {
	srv := newChargeServer(t)
	store := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	url := srv.URL + "/v1/charges"
	cmd, cout, cerr, exited := child(t, "--operation", "charge/order-1001", "--store", store, "-d", chargeBody, url)
	select {
	case <-srv.arrived:
	case err := <-exited:
		t.Fatalf("the first run exited before its request arrived (%v):\n%s%s", err, cout, cerr)
	}
	cmd.Process.Kill()
	<-exited
	code, out, errOut := runDo(t, "", "--operation", "charge/order-1001", "--store", store, "-d", `{"order":"1001","amount":9900}`, url)
	if code != 2 || out != "" || !strings.Contains(errOut, "operation reused with a different request") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and the mismatch", code, out, errOut)
	}
	if keys, _, _ := srv.seen(); len(keys) != 1 {
		t.Fatalf("the refused run reached the server")
	}
}

// A store that cannot be reached fails before anything is sent: exit
// status 3, safe to run again.
func TestDoStoreUnreachable(t *testing.T) {
	srv := newScriptServer(t)
	addr := strings.TrimPrefix(closedURL(t), "http://")
	addr = addr[:strings.IndexByte(addr, '/')]
	code, _, errOut := runDo(t, "", "--operation", "op", "--store", "redis://"+addr, "-d", "x", srv.URL)
	wantExit(t, code, 3, errOut)
	if !strings.Contains(errOut, "nothing was sent: safe to run again") || len(srv.seen()) != 0 {
		t.Errorf("stderr %q, server saw %d", errOut, len(srv.seen()))
	}
}
