// Command durabledemo shows an idempotency key surviving a crash: kill it
// mid-retry, run it again, and the customer is still charged once.
//
// It runs a payments API of its own on a loopback port: the API keeps its
// charges in a ledger file, deduplicates them by Idempotency-Key, and is
// flaky on purpose. The first request it gets in a run is charged, but the
// connection drops before the answer; the next few get 503 with a
// Retry-After. The client charges one order through saferetry, naming the
// operation "charge/order-ID" and keeping its key in a store.
//
// Kill the client while it waits to retry (Ctrl-C, or kill -9 from
// another terminal) and run it again: with the default SQLite store, the
// new process finds the operation pending, sends it again with the key the
// dead one used, and the API answers with the charge it already made. With
// -store memory, the new process has forgotten the key, and the API
// charges the order a second time.
//
//	go run ./cmd/durabledemo -dir /tmp/durabledemo                # kill it mid-retry, run it again
//	go run ./cmd/durabledemo -dir /tmp/durabledemo -store memory  # the same without a durable key
//	go run ./cmd/durabledemo -dir /tmp/durabledemo -store redis -redis 127.0.0.1:6379
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/keystore/redisstore"
	"github.com/saferetry/saferetry/keystore/sqlitestore"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.dir, "dir", filepath.Join(os.TempDir(), "durabledemo"), "directory for the key store and the API's ledger; remove it to start over")
	flag.StringVar(&cfg.store, "store", "sqlite", "where keys are kept: sqlite (DIR/keys.db), redis, or memory (forgotten at exit)")
	flag.StringVar(&cfg.redisAddr, "redis", "127.0.0.1:6379", "Redis address, for -store redis")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8402", "loopback address of the demo payments API; the same in every run")
	flag.StringVar(&cfg.order, "order", "1001", "the order to charge")
	flag.IntVar(&cfg.fail, "fail", 3, "how many requests of each run the API fails: the first drops its answer after charging, the others get 503")
	flag.Parse()
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "durabledemo:", err)
		os.Exit(1)
	}
}

type config struct {
	dir, store, redisAddr, addr, order string
	fail                               int
	retryAfter                         time.Duration // the API's Retry-After; 0 means 4s
	afterDrop                          func()        // tests: called once the first answer was dropped
}

func run(ctx context.Context, cfg config, w io.Writer) error {
	out := &syncWriter{w: w} // the client and the API both print
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err
	}
	store, closeStore, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer closeStore()

	api, err := startAPI(cfg, out)
	if err != nil {
		return err
	}
	defer api.close()

	op := "charge/order-" + cfg.order
	pending, err := store.Pending(ctx)
	if err != nil {
		return err
	}
	for _, p := range pending {
		fmt.Fprintf(out, "client: %s was begun %s ago and never finished (key %s): sending it again\n",
			p.Operation, time.Since(p.Created).Round(time.Second), p.Key)
	}

	stack := saferetry.New(nil,
		saferetry.WithKeyStore(store),
		saferetry.WithMaxRetries(5),
		saferetry.WithBackoff(500*time.Millisecond, 4*time.Second),
		saferetry.WithHook(func(ev saferetry.Event) {
			what := fmt.Sprint(ev.StatusCode())
			if ev.Err != nil {
				what = ev.Err.Error()
			}
			if ev.Stopped != saferetry.StopNone {
				fmt.Fprintf(out, "client: attempt %d failed (%s); not retrying: %s\n", ev.Number, what, ev.Stopped)
				return
			}
			fmt.Fprintf(out, "client: attempt %d failed (%s); retrying in %s with the same key.\n"+
				"        Kill me now (Ctrl-C, or kill -9 %d) and run me again.\n",
				ev.Number, what, ev.Delay.Round(100*time.Millisecond), os.Getpid())
		}))
	defer stack.CloseIdleConnections()

	body := fmt.Sprintf(`{"order":%q,"amount":4200,"currency":"eur"}`, cfg.order)
	req, err := http.NewRequestWithContext(saferetry.WithOperation(ctx, op), http.MethodPost,
		"http://"+cfg.addr+"/v1/charges", strings.NewReader(body))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client: POST /v1/charges for order %s, as operation %s, keys kept in %s\n", cfg.order, op, storeName(cfg))
	resp, err := stack.RoundTrip(req)
	switch {
	case errors.Is(err, saferetry.ErrOperationDone):
		fmt.Fprintf(out, "client: %s already completed in an earlier run; nothing sent\n", op)
	case err != nil:
		return err
	default:
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		replayed := ""
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			replayed = " (replayed: the API had already charged this key)"
		}
		fmt.Fprintf(out, "client: %s %s%s\n", resp.Status, strings.TrimSpace(string(answer)), replayed)
	}

	charges := api.ledger.forOrder(cfg.order)
	fmt.Fprintf(out, "ledger: order %s charged %d time(s)", cfg.order, len(charges))
	for _, c := range charges {
		fmt.Fprintf(out, " [%s %d %s, key %s]", c.ID, c.Amount, c.Currency, c.Key)
	}
	fmt.Fprintln(out)
	if len(charges) > 1 {
		fmt.Fprintln(out, "ledger: DOUBLE CHARGE: the restarted client sent the charge under a new key")
	}
	return nil
}

func openStore(cfg config) (saferetry.KeyStore, func() error, error) {
	switch cfg.store {
	case "sqlite":
		s, err := sqlitestore.Open(filepath.Join(cfg.dir, "keys.db"), sqlitestore.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	case "redis":
		client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, ContextTimeoutEnabled: true})
		return redisstore.New(client, redisstore.Options{Prefix: "durabledemo:"}), client.Close, nil
	case "memory":
		return &saferetry.MemoryKeyStore{}, func() error { return nil }, nil
	}
	return nil, nil, fmt.Errorf("unknown -store %q (want sqlite, redis or memory)", cfg.store)
}

func storeName(cfg config) string {
	switch cfg.store {
	case "sqlite":
		return filepath.Join(cfg.dir, "keys.db")
	case "redis":
		return "Redis at " + cfg.redisAddr
	}
	return "memory (forgotten at exit)"
}

// api is the demo payments API.
type api struct {
	cfg      config
	out      io.Writer
	ledger   *ledger
	server   *http.Server
	served   chan struct{}
	requests atomic.Int64
	dropped  sync.Once
	handlers sync.WaitGroup // Close does not wait for hijacked connections' handlers
}

func startAPI(cfg config, out io.Writer) (*api, error) {
	l, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("starting the demo API (pass another -addr, the same in every run): %w", err)
	}
	a := &api{cfg: cfg, out: out, ledger: &ledger{path: filepath.Join(cfg.dir, "ledger.json")}, served: make(chan struct{})}
	a.server = &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	go func() { a.server.Serve(l); close(a.served) }()
	return a, nil
}

func (a *api) close() {
	a.server.Close()
	<-a.served
	a.handlers.Wait()
}

type chargeRequest struct {
	Order    string `json:"order"`
	Amount   int    `json:"amount"`
	Currency string `json:"currency"`
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.handlers.Add(1)
	defer a.handlers.Done()
	n := a.requests.Add(1)
	var req chargeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Path != "/v1/charges" || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if n > 1 && n <= int64(a.cfg.fail) {
		retryAfter := a.cfg.retryAfter
		if retryAfter == 0 {
			retryAfter = 4 * time.Second
		}
		fmt.Fprintf(a.out, "server: 503 Service Unavailable, Retry-After: %d (nothing charged)\n", int(retryAfter.Seconds()))
		w.Header().Set("Retry-After", fmt.Sprint(int(retryAfter.Seconds())))
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	c, replayed, err := a.ledger.charge(key, req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if replayed {
		fmt.Fprintf(a.out, "server: key %s seen before: answering with %s again, charging nothing\n", key, c.ID)
	} else {
		fmt.Fprintf(a.out, "server: key %s is new: charged %s, %d %s, order %s\n", key, c.ID, c.Amount, c.Currency, c.Order)
	}
	if n == 1 && a.cfg.fail > 0 {
		fmt.Fprintln(a.out, "server: ...and the connection drops before the answer is sent")
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		if a.cfg.afterDrop != nil {
			a.dropped.Do(a.cfg.afterDrop)
		}
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(c)
}

// ledger is the API's record of charges, in a JSON file that survives
// the demo's restarts, as a payments provider's database would.
type ledger struct {
	path string
	mu   sync.Mutex
}

type charge struct {
	ID       string `json:"id"`
	Key      string `json:"key"`
	Order    string `json:"order"`
	Amount   int    `json:"amount"`
	Currency string `json:"currency"`
}

func (l *ledger) load() []charge {
	var charges []charge
	if b, err := os.ReadFile(l.path); err == nil {
		json.Unmarshal(b, &charges)
	}
	return charges
}

// charge returns the charge made for key, or makes and saves a new one
// (always new for a request without a key).
func (l *ledger) charge(key string, req chargeRequest) (c charge, replayed bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	charges := l.load()
	for _, c := range charges {
		if key != "" && c.Key == key {
			return c, true, nil
		}
	}
	c = charge{ID: fmt.Sprint("ch_", len(charges)+1), Key: key, Order: req.Order, Amount: req.Amount, Currency: req.Currency}
	b, err := json.MarshalIndent(append(charges, c), "", "  ")
	if err != nil {
		return c, false, err
	}
	return c, false, writeFileSync(l.path, b)
}

func (l *ledger) forOrder(order string) []charge {
	l.mu.Lock()
	defer l.mu.Unlock()
	var mine []charge
	for _, c := range l.load() {
		if c.Order == order {
			mine = append(mine, c)
		}
	}
	return mine
}

// writeFileSync replaces path with b durably: a temporary file, synced,
// renamed over it.
func writeFileSync(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ledger-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
