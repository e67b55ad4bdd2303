package keystore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/keystore/keystoretest"
	"github.com/saferetry/saferetry/keystore/redisstore"
	"github.com/saferetry/saferetry/keystore/sqlitestore"
)

// The core's MemoryKeyStore keeps the same contract as the durable stores.
func TestMemoryKeyStoreContract(t *testing.T) {
	keystoretest.Run(t, func(*testing.T) saferetry.KeyStore { return &saferetry.MemoryKeyStore{} })
}

// openStore opens the store a spec names: "memory:", "sqlite:PATH" or
// "redis:ADDR". close releases it (and the Redis client).
func openStore(spec string) (store saferetry.KeyStore, close func() error, err error) {
	kind, target, _ := strings.Cut(spec, ":")
	switch kind {
	case "memory":
		return &saferetry.MemoryKeyStore{}, func() error { return nil }, nil
	case "sqlite":
		s, err := sqlitestore.Open(target, sqlitestore.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	case "redis":
		client := redis.NewClient(&redis.Options{Addr: target, ContextTimeoutEnabled: true})
		return redisstore.New(client, redisstore.Options{}), client.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown store spec %q", spec)
}

// pending lists the operations pending in the store spec names.
func pending(t *testing.T, spec string) []saferetry.OperationRecord {
	t.Helper()
	store, closeStore, err := openStore(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	p, err := store.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
