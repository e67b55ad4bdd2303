package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/keystore/redisstore"
	"github.com/saferetry/saferetry/keystore/sqlitestore"
)

// storeSpec is a checked --store: a SQLite file or a Redis server.
type storeSpec struct {
	raw        string
	sqlitePath string         // sqlite:PATH
	redis      *redis.Options // redis:// or rediss://
}

// parseStoreSpec checks --store without opening anything.
func parseStoreSpec(spec string) (storeSpec, error) {
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		if path == "" {
			return storeSpec{}, usagef("--store sqlite: name the file, as sqlite:PATH")
		}
		return storeSpec{raw: spec, sqlitePath: path}, nil
	}
	u, err := url.Parse(spec)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return storeSpec{}, usagef("--store %q: want sqlite:PATH or redis://[user:password@]host:port[/db]", redactStore(spec))
	}
	opts, err := redis.ParseURL(spec)
	if err != nil {
		return storeSpec{}, usagef("--store %q: %v", redactStore(spec), err)
	}
	// A Redis that stops answering must hold the request no longer than
	// its context allows (redisstore.New insists).
	opts.ContextTimeoutEnabled = true
	return storeSpec{raw: spec, redis: opts}, nil
}

// open opens the store. An error is a usage error: nothing was sent.
// Opening a Redis store connects to nothing: a Redis that cannot be
// reached fails the operation's first step, before anything is sent.
func (s storeSpec) open() (saferetry.KeyStore, func() error, error) {
	if s.redis != nil {
		// go-redis prints its pool's dial failures on stderr by itself;
		// do reports the failure once, with its exit status.
		redis.SetLogger(quietRedis{})
		client := redis.NewClient(s.redis)
		return redisstore.New(client, redisstore.Options{}), client.Close, nil
	}
	// SQLite reports a missing directory as "out of memory (14)".
	if dir := filepath.Dir(s.sqlitePath); dir != "" {
		if fi, err := os.Stat(dir); err != nil {
			return nil, nil, usagef("--store %s: %v", s.raw, err)
		} else if !fi.IsDir() {
			return nil, nil, usagef("--store %s: %s is not a directory", s.raw, dir)
		}
	}
	st, err := sqlitestore.Open(s.sqlitePath, sqlitestore.Options{})
	if err != nil {
		return nil, nil, usagef("--store %s: %v", s.raw, err)
	}
	return st, st.Close, nil
}

// quietRedis is a go-redis logger that prints nothing.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// String is the store for messages, any password hidden.
func (s storeSpec) String() string { return redactStore(s.raw) }

// redactStore hides the password of a Redis URL.
func redactStore(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.User != nil {
		return u.Redacted()
	}
	return spec
}
