// Package redisstore is a saferetry.KeyStore in Redis, for a fleet: any
// instance that resumes an operation, after its own restart or another
// instance's crash, gets the key the operation was first sent with.
//
// Each operation is one Redis key, the prefix followed by the operation's
// name, holding JSON {"key", "fingerprint", "created", "state", "status"}
// and expiring with the store's TTL. The name is only in the Redis key,
// which is binary safe, and the JSON holds only ASCII (the key, the
// fingerprint's text form, a time), so nothing is lost to JSON's
// replacement of bytes that are not UTF-8. Begin is a single SET ... NX GET PX
// (Redis 7.0 or newer), so concurrent instances agree on one key without
// a lock; Finish is a small Lua script that marks the record done, keeping
// its TTL.
//
// The client must be created with ContextTimeoutEnabled (see New), so that
// a Redis that stops answering holds a call no longer than its context
// allows.
//
// The key is as durable as Redis makes it: a crash of the client process
// (the common case) loses nothing, while a crash of Redis itself loses what
// its persistence settings (appendfsync) had not yet written.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
)

// DefaultPrefix starts the Redis key of every operation when Options
// leaves Prefix empty.
const DefaultPrefix = "saferetry:op:"

// Options configures a Store; the zero value means the defaults.
type Options struct {
	// TTL is how long an operation is remembered after it began,
	// finished or not. Zero means saferetry.DefaultOperationTTL. Keep it
	// shorter than the server keeps keys.
	TTL time.Duration
	// Prefix starts the Redis key of every operation. Empty means
	// DefaultPrefix. Stores sharing a prefix share their operations.
	Prefix string
}

// Store is a saferetry.KeyStore in Redis. It does not own the client:
// close the client when done. Safe for concurrent use, by any number of
// processes sharing the Redis.
type Store struct {
	client redis.UniversalClient
	ttl    time.Duration
	prefix string
}

var _ saferetry.KeyStore = (*Store)(nil)

// New returns a store keeping its operations through client.
//
// The client must honour contexts: create it with ContextTimeoutEnabled
// set (redis.Options, redis.ClusterOptions, redis.RingOptions,
// redis.FailoverOptions or redis.UniversalOptions). Without it go-redis
// ignores a context's deadline and waits for its own ReadTimeout (5 s by
// default, more with retries), so a Redis that stops answering would hold
// every named request that long, including a successful response waiting
// for its Finish, which KeyInjector bounds to about a second. The
// setting only ever shortens a wait: a command still gives up at
// ReadTimeout when its context has no deadline. New panics when given one
// of go-redis's clients without it; a client of another type must
// honour contexts too.
func New(client redis.UniversalClient, opts Options) *Store {
	if ignoresContexts(client) {
		panic("redisstore: New: the client ignores context deadlines (ContextTimeoutEnabled is false), " +
			"so a Redis that stops answering would hold requests for the client's ReadTimeout; " +
			"create the client with ContextTimeoutEnabled: true")
	}
	if opts.TTL <= 0 {
		opts.TTL = saferetry.DefaultOperationTTL
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	return &Store{client: client, ttl: opts.TTL, prefix: opts.Prefix}
}

// ignoresContexts reports whether client is one of go-redis's clients
// configured to ignore context deadlines.
func ignoresContexts(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return !c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return !c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return !c.Options().ContextTimeoutEnabled
	}
	return false
}

// record is the JSON kept for one operation.
type record struct {
	Key         string                `json:"key"`
	Fingerprint saferetry.Fingerprint `json:"fingerprint"`
	Created     time.Time             `json:"created"`
	State       string                `json:"state"` // "pending" or "done"
	Status      int                   `json:"status,omitempty"`
}

func (r record) operation(op string) saferetry.OperationRecord {
	return saferetry.OperationRecord{Operation: op, Key: r.Key, Fingerprint: r.Fingerprint, Created: r.Created, Status: r.Status}
}

// Begin implements saferetry.KeyStore.
func (s *Store) Begin(ctx context.Context, op string, fp saferetry.Fingerprint, key string) (string, error) {
	value, err := json.Marshal(record{Key: key, Fingerprint: fp, Created: time.Now().UTC(), State: "pending"})
	if err != nil {
		return "", fmt.Errorf("redisstore: begin %q: %w", op, err)
	}
	old, err := s.client.SetArgs(ctx, s.prefix+op, value, redis.SetArgs{Mode: "NX", TTL: s.ttl, Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return key, nil // recorded now
	}
	if err != nil {
		return "", fmt.Errorf("redisstore: begin %q: %w", op, err)
	}
	var rec record
	if err := json.Unmarshal([]byte(old), &rec); err != nil {
		return "", fmt.Errorf("redisstore: begin %q: reading %s: %w", op, s.prefix+op, err)
	}
	return rec.operation(op).Resume(fp)
}

// finishScript marks a record done if it still holds the given key,
// keeping its TTL. KEYS[1] is the record; ARGV is the key and the status.
var finishScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = cjson.decode(v)
if r.key ~= ARGV[1] then return 0 end
r.state = 'done'
r.status = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
return 1
`)

// Finish implements saferetry.KeyStore.
func (s *Store) Finish(ctx context.Context, op, key string, status int) error {
	if err := finishScript.Run(ctx, s.client, []string{s.prefix + op}, key, status).Err(); err != nil {
		return fmt.Errorf("redisstore: finish %q: %w", op, err)
	}
	return nil
}

// Pending implements saferetry.KeyStore. It SCANs the keys under the
// prefix (on every master, for a Redis Cluster): a cost proportional to
// the whole keyspace, meant for startup, not for every request.
func (s *Store) Pending(ctx context.Context) ([]saferetry.OperationRecord, error) {
	var pending []saferetry.OperationRecord
	var err error
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster runs one goroutine per master
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mine, err := s.scan(ctx, c)
			mu.Lock()
			pending = append(pending, mine...)
			mu.Unlock()
			return err
		})
	} else {
		pending, err = s.scan(ctx, s.client)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: pending: %w", err)
	}
	slices.SortFunc(pending, func(a, b saferetry.OperationRecord) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Operation, b.Operation)
	})
	return pending, nil
}

// scanBatch is how many keys SCAN is asked for at a time, and read at a
// time.
const scanBatch = 256

// scan lists the pending records among the keys under the prefix on the
// server c talks to.
func (s *Store) scan(ctx context.Context, c redis.UniversalClient) ([]saferetry.OperationRecord, error) {
	var pending []saferetry.OperationRecord
	var batch []string
	iter := c.Scan(ctx, 0, escapeGlob(s.prefix)+"*", scanBatch).Iterator()
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) < scanBatch {
			continue
		}
		recs, err := s.read(ctx, c, batch)
		if err != nil {
			return nil, err
		}
		pending, batch = append(pending, recs...), batch[:0]
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	recs, err := s.read(ctx, c, batch)
	return append(pending, recs...), err
}

// read fetches the records under keys, pipelined (one GET per key, which
// a Redis Cluster node accepts where a multi-slot MGET is refused), and
// returns the pending ones. Keys that expired meanwhile are skipped.
func (s *Store) read(ctx context.Context, c redis.UniversalClient, keys []string) ([]saferetry.OperationRecord, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var pending []saferetry.OperationRecord
	for i, cmd := range cmds {
		v, err := cmd.(*redis.StringCmd).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rec record
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			return nil, fmt.Errorf("reading %s: %w", keys[i], err)
		}
		if rec.State == "pending" {
			pending = append(pending, rec.operation(strings.TrimPrefix(keys[i], s.prefix)))
		}
	}
	return pending, nil
}

// escapeGlob escapes the characters SCAN MATCH treats as a pattern. It
// works on bytes, as Redis does: a prefix that is not UTF-8 is matched
// exactly.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
