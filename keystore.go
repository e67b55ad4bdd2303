package saferetry

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultOperationTTL is how long a MemoryKeyStore remembers an operation
// when no TTL is given: 24 hours, the shortest time Stripe keeps a key. A
// store should forget operations before the server forgets their keys: a
// key the server no longer knows deduplicates nothing.
const DefaultOperationTTL = 24 * time.Hour

// KeyStore records the idempotency keys of named operations (see
// WithOperation), so that every attempt of an operation, in this process
// or in the next one, carries the same key. KeyInjector consults it only
// for requests that name an operation and would otherwise get a fresh key.
//
// A store must keep what it is given exactly: an operation's name is any
// string, bytes that are not UTF-8, NUL bytes and tens of KiB included (a
// store that encodes names as text must encode them losslessly, or keep
// them in a binary-safe field); a key is visible ASCII of at most
// MaxKeyLength bytes (KeyInjector checks it); a Fingerprint's text form
// (MarshalText) is ASCII. Package keystoretest in the keystore module
// checks a store against this contract, hostile names included.
//
// Implementations must be safe for concurrent use, by several goroutines
// and, for a durable store, by several processes sharing it, and must
// return soon after their context is done (a deadline included): every
// call is on the path of a request, and KeyInjector runs them
// synchronously, leaving nothing behind the request.
type KeyStore interface {
	// Begin returns the key to send for operation op, about to be sent
	// as the request fingerprinted fp. An operation the store does not
	// know is recorded with key, the fresh candidate KeyInjector made,
	// durably for a durable store, before Begin returns: the request is
	// sent only after. A recorded operation is answered as
	// OperationRecord.Resume does: its key if fp matches and it is still
	// pending, otherwise an error wrapping ErrFingerprintMismatch or
	// ErrOperationDone. Operations older than the store's TTL are
	// forgotten: Begin records them anew.
	Begin(ctx context.Context, op string, fp Fingerprint, key string) (string, error)
	// Finish records that the operation sent with key reached a final
	// outcome, status: a 2xx, a 303, or a 4xx that sending again cannot
	// change.
	// It does nothing if op is not recorded with that key (it expired, or
	// was begun anew since). A finished operation is no longer pending;
	// the store remembers it until its TTL so that a late repeat is
	// refused with ErrOperationDone.
	//
	// KeyInjector calls Finish before it hands the response to the
	// caller, with a context that ignores the caller's cancellation but
	// has a deadline of its own, about a second away: a Finish that cannot
	// complete by then must give up and return, leaving the operation
	// pending (sending it again reuses its key). An error is not reported
	// to the caller, for the same reason.
	Finish(ctx context.Context, op, key string, status int) error
	// Pending lists the operations begun but not finished, oldest first:
	// after a restart, the writes whose outcome is unknown, for a daemon
	// to send again (with the same name, fingerprint and so key).
	Pending(ctx context.Context) ([]OperationRecord, error)
}

// MemoryKeyStore is a KeyStore in memory. It keeps an operation's key for
// as long as the process lives and at most its TTL, so it survives no
// restart: it is what a KeyInjector uses for named operations when it was
// given no store, and a reference for tests. Expired operations are
// pruned as the store is used, in constant time per operation.
//
// The zero value is usable, with DefaultOperationTTL. Safe for concurrent
// use.
type MemoryKeyStore struct {
	ttl time.Duration

	mu  sync.Mutex
	ops map[string]OperationRecord
	// order lists operations by creation time, which, the TTL being the
	// same for all, is also their order of expiry.
	order []memoryEntry
}

// memoryEntry names the record created at created; the record may have
// been replaced since, by a newer one of the same name.
type memoryEntry struct {
	op      string
	created time.Time
}

var _ KeyStore = (*MemoryKeyStore)(nil)

// NewMemoryKeyStore returns an empty store that forgets each operation ttl
// after it began, finished or not. A ttl of zero or less means
// DefaultOperationTTL.
func NewMemoryKeyStore(ttl time.Duration) *MemoryKeyStore {
	return &MemoryKeyStore{ttl: ttl}
}

// Begin implements KeyStore.
func (s *MemoryKeyStore) Begin(ctx context.Context, op string, fp Fingerprint, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	if rec, ok := s.ops[op]; ok {
		return rec.Resume(fp)
	}
	if s.ops == nil {
		s.ops = make(map[string]OperationRecord)
	}
	s.ops[op] = OperationRecord{Operation: op, Key: key, Fingerprint: fp, Created: now}
	s.order = append(s.order, memoryEntry{op: op, created: now})
	return key, nil
}

// Finish implements KeyStore.
func (s *MemoryKeyStore) Finish(ctx context.Context, op, key string, status int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(time.Now())
	if rec, ok := s.ops[op]; ok && rec.Key == key {
		rec.Status = status
		s.ops[op] = rec
	}
	return nil
}

// Pending implements KeyStore.
func (s *MemoryKeyStore) Pending(ctx context.Context) ([]OperationRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.prune(time.Now())
	var pending []OperationRecord
	for _, rec := range s.ops {
		if !rec.Done() {
			pending = append(pending, rec)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(pending, func(a, b OperationRecord) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Operation, b.Operation)
	})
	return pending, nil
}

func (s *MemoryKeyStore) lifetime() time.Duration {
	if s.ttl <= 0 {
		return DefaultOperationTTL
	}
	return s.ttl
}

// prune forgets the operations whose TTL has run out by now. s.mu is held.
func (s *MemoryKeyStore) prune(now time.Time) {
	ttl := s.lifetime()
	n := 0
	for ; n < len(s.order); n++ {
		e := s.order[n]
		if now.Sub(e.created) < ttl {
			break
		}
		if rec, ok := s.ops[e.op]; ok && rec.Created.Equal(e.created) {
			delete(s.ops, e.op)
		}
		s.order[n] = memoryEntry{} // release the name
	}
	if n > 0 {
		s.order = s.order[n:]
	}
}
