package saferetry

import (
	"context"
	"errors"
	"fmt"
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
// 255 bytes (KeyInjector checks it); a Fingerprint's text form
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
	// forgotten: Begin records them anew. A store that cannot record a
	// new operation returns an error, and nothing is sent (a
	// MemoryKeyStore full of pending operations: ErrKeyStoreFull).
	Begin(ctx context.Context, op string, fp Fingerprint, key string) (string, error)
	// Finish records that the operation sent with key reached a final
	// outcome, status: a 2xx, a 303, or a 4xx that sending again cannot
	// change. It does nothing if op is not recorded with that key (it
	// expired, or was begun anew since). A finished operation is no
	// longer pending; the store remembers it until its TTL (a
	// MemoryKeyStore at capacity may forget it sooner) so that a late
	// repeat is refused with ErrOperationDone.
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

// ErrKeyStoreFull is returned, wrapped in an *OperationError, for a named
// request that a MemoryKeyStore cannot record: it holds MaxOperations
// operations, every one of them pending, and forgets none of them (each
// may be a write whose outcome is unknown). Nothing was sent. Send the
// pending operations until their answers are final, raise MaxOperations,
// or use a durable store.
var ErrKeyStoreFull = errors.New("saferetry: key store full of pending operations")

// defaultMaxOperations is MaxOperations when it is zero.
const defaultMaxOperations = 100_000

// MemoryKeyStore is a KeyStore in memory. It keeps an operation's key for
// as long as the process lives, and at most its TTL, so it survives no
// restart: it is what a KeyInjector uses for named operations when it was
// given no store, and a reference for tests.
//
// It keeps at most MaxOperations operations, so that its memory does not
// grow with the request rate times the TTL. When a new operation finds it
// full, it forgets finished operations, the one that finished first
// first. A rerun of a forgotten operation is a new operation: it is sent
// with a new key, where one still remembered would be refused with
// ErrOperationDone. A pending operation is never forgotten before its
// TTL: a store full of pending operations refuses new ones with
// ErrKeyStoreFull. Expiry and eviction take constant time per operation.
//
// Each operation costs about 285 bytes with a 20-byte name and a UUID key
// (measured on 64-bit Linux; a longer name costs its length more), so a
// full store at the default MaxOperations holds about 28 MB.
//
// The zero value is usable, with the defaults. Set the fields before the
// store is first used. Safe for concurrent use.
type MemoryKeyStore struct {
	// TTL is how long an operation is remembered after it began,
	// finished or not. Zero means DefaultOperationTTL.
	TTL time.Duration
	// MaxOperations is how many operations, pending and finished, the
	// store remembers at most. Zero means 100,000.
	MaxOperations int

	mu  sync.Mutex
	ops map[string]*memoryRecord
	// lists holds the records in two orders: byAge lists every record,
	// oldest first, which (the TTL being the same for all) is the order
	// they expire in; byFinish lists the finished ones in the order they
	// finished, the order they are evicted in.
	lists [2]memoryList
}

// The orders of MemoryKeyStore.lists.
const (
	byAge = iota
	byFinish
)

// memoryRecord is one operation, linked into the store's lists (into
// byFinish once it is done).
type memoryRecord struct {
	OperationRecord
	links [2]struct{ prev, next *memoryRecord }
}

// memoryList is a doubly linked list of records, threaded through their
// links, so that a record leaves any list in constant time.
type memoryList struct{ head, tail *memoryRecord }

var _ KeyStore = (*MemoryKeyStore)(nil)

// Begin implements KeyStore.
func (s *MemoryKeyStore) Begin(ctx context.Context, op string, fp Fingerprint, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if rec, ok := s.ops[op]; ok {
		return rec.Resume(fp)
	}
	for limit := s.limit(); len(s.ops) >= limit; {
		oldest := s.lists[byFinish].head
		if oldest == nil {
			return "", fmt.Errorf("%w (MaxOperations %d)", ErrKeyStoreFull, limit)
		}
		s.forget(oldest)
	}
	if s.ops == nil {
		s.ops = make(map[string]*memoryRecord)
	}
	rec := &memoryRecord{OperationRecord: OperationRecord{Operation: op, Key: key, Fingerprint: fp, Created: now}}
	s.ops[op] = rec
	s.push(byAge, rec)
	return key, nil
}

// Finish implements KeyStore.
func (s *MemoryKeyStore) Finish(ctx context.Context, op, key string, status int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(time.Now())
	rec, ok := s.ops[op]
	if !ok || rec.Key != key || status == 0 { // status 0 would read as pending
		return nil
	}
	if !rec.Finished() {
		s.push(byFinish, rec)
	}
	rec.Status = status
	return nil
}

// Pending implements KeyStore.
func (s *MemoryKeyStore) Pending(ctx context.Context) ([]OperationRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(time.Now())
	var pending []OperationRecord
	for r := s.lists[byAge].head; r != nil; r = r.links[byAge].next {
		if !r.Finished() {
			pending = append(pending, r.OperationRecord)
		}
	}
	return pending, nil
}

func (s *MemoryKeyStore) ttl() time.Duration {
	if s.TTL <= 0 {
		return DefaultOperationTTL
	}
	return s.TTL
}

func (s *MemoryKeyStore) limit() int {
	if s.MaxOperations <= 0 {
		return defaultMaxOperations
	}
	return s.MaxOperations
}

// expire forgets the operations whose TTL has run out by now, oldest
// first. s.mu is held.
func (s *MemoryKeyStore) expire(now time.Time) {
	ttl := s.ttl()
	for r := s.lists[byAge].head; r != nil && now.Sub(r.Created) >= ttl; r = s.lists[byAge].head {
		s.forget(r)
	}
}

// forget removes r from the store. s.mu is held.
func (s *MemoryKeyStore) forget(r *memoryRecord) {
	delete(s.ops, r.Operation)
	s.unlink(byAge, r)
	if r.Finished() {
		s.unlink(byFinish, r)
	}
}

// push appends r to list l. s.mu is held.
func (s *MemoryKeyStore) push(l int, r *memoryRecord) {
	list := &s.lists[l]
	r.links[l].prev, r.links[l].next = list.tail, nil
	if list.tail != nil {
		list.tail.links[l].next = r
	} else {
		list.head = r
	}
	list.tail = r
}

// unlink removes r from list l. s.mu is held.
func (s *MemoryKeyStore) unlink(l int, r *memoryRecord) {
	list, link := &s.lists[l], &r.links[l]
	if link.prev != nil {
		link.prev.links[l].next = link.next
	} else {
		list.head = link.next
	}
	if link.next != nil {
		link.next.links[l].prev = link.prev
	} else {
		list.tail = link.prev
	}
	link.prev, link.next = nil, nil
}
