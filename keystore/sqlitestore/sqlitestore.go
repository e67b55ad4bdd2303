// Package sqlitestore is a saferetry.KeyStore in a SQLite file, so that a
// daemon's idempotency keys survive its restarts: an operation interrupted
// by a crash is sent again, after the restart, with the key its first
// attempt carried, and the server deduplicates it.
//
// It uses the pure Go driver modernc.org/sqlite (no cgo). The file is in
// WAL mode with synchronous=FULL, so an operation's key is on disk before
// Begin returns, that is before the first byte of the request is sent; and
// with a busy timeout, so several processes can share one file.
package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/saferetry/saferetry"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// DefaultBusyTimeout is how long a write waits for another process
// holding the file's write lock, when Options leaves it zero.
const DefaultBusyTimeout = 10 * time.Second

// Options configures a Store; the zero value means the defaults.
type Options struct {
	// TTL is how long an operation is remembered after it began,
	// finished or not. Zero means saferetry.DefaultOperationTTL. Keep it
	// shorter than the server keeps keys.
	TTL time.Duration
	// BusyTimeout is how long a write waits for the write lock another
	// process holds, at most: a call whose context is done first gives up
	// then (KeyInjector gives Finish about a second). Zero means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
}

// schema is the table of operations. An operation's name is a BLOB, kept
// and compared byte for byte whatever it holds (SQLite does not promise
// that for TEXT that is not UTF-8 or holds NUL bytes); the key and the
// fingerprint are ASCII. created is in Unix nanoseconds; state is
// 'pending' until the operation's final outcome, then 'done' with its
// status. The UPDATE turns names an earlier version wrote as TEXT into
// BLOBs, which a BLOB parameter never equals: without it, such an
// operation would be begun anew under a new key.
const schema = `
CREATE TABLE IF NOT EXISTS pending_operations (
	operation   BLOB PRIMARY KEY,
	"key"       TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	created     INTEGER NOT NULL,
	state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
	status      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pending_operations_created ON pending_operations (created);
UPDATE pending_operations SET operation = CAST(operation AS BLOB) WHERE typeof(operation) = 'text';
`

// Store is a saferetry.KeyStore in a SQLite file. Safe for concurrent
// use by several goroutines, and by several processes opening the same
// file (on a local file system: SQLite's locking does not hold on
// network file systems).
type Store struct {
	db  *sql.DB
	ttl time.Duration
	now func() time.Time // time.Now; tests move it
}

var _ saferetry.KeyStore = (*Store)(nil)

// Open opens the store in the SQLite file at path, creating the file and
// its table if need be. Close it when done.
func Open(path string, opts Options) (*Store, error) {
	if opts.TTL <= 0 {
		opts.TTL = saferetry.DefaultOperationTTL
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	// Every connection gets the pragmas (synchronous is per connection),
	// and transactions take the write lock at BEGIN (_txlock=immediate),
	// so two processes beginning at once queue instead of deadlocking.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	// One connection: writers in this process queue in database/sql
	// rather than in SQLite's busy handler, which polls.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return &Store{db: db, ttl: opts.TTL, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Begin implements saferetry.KeyStore. In one transaction it forgets
// expired operations, records op unless it is recorded, and reads the
// record back: race-free across goroutines and processes.
func (s *Store) Begin(ctx context.Context, op string, fp saferetry.Fingerprint, key string) (_ string, err error) {
	fpText, err := fp.MarshalText()
	if err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM pending_operations WHERE created <= ?`, s.expired(now)); err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	if _, err = tx.ExecContext(ctx, `
		INSERT INTO pending_operations (operation, "key", fingerprint, created, state)
		VALUES (?, ?, ?, ?, 'pending')
		ON CONFLICT (operation) DO NOTHING`,
		[]byte(op), key, string(fpText), now.UnixNano()); err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	rec := saferetry.OperationRecord{Operation: op}
	var recorded string
	var created int64
	err = tx.QueryRowContext(ctx, `SELECT "key", fingerprint, created, status FROM pending_operations WHERE operation = ?`, []byte(op)).
		Scan(&rec.Key, &recorded, &created, &rec.Status)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	if err = tx.Commit(); err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	if err := rec.Fingerprint.UnmarshalText([]byte(recorded)); err != nil {
		return "", fmt.Errorf("sqlitestore: begin %q: %w", op, err)
	}
	rec.Created = time.Unix(0, created)
	return rec.Resume(fp)
}

// Finish implements saferetry.KeyStore.
func (s *Store) Finish(ctx context.Context, op, key string, status int) error {
	_, err := s.db.ExecContext(ctx, `
		UPDATE pending_operations SET state = 'done', status = ?
		WHERE operation = ? AND "key" = ? AND created > ?`,
		status, []byte(op), key, s.expired(s.now()))
	if err != nil {
		return fmt.Errorf("sqlitestore: finish %q: %w", op, err)
	}
	return nil
}

// Pending implements saferetry.KeyStore.
func (s *Store) Pending(ctx context.Context) ([]saferetry.OperationRecord, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT operation, "key", fingerprint, created FROM pending_operations
		WHERE state = 'pending' AND created > ?
		ORDER BY created, operation`, s.expired(s.now()))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: pending: %w", err)
	}
	defer rows.Close()
	var pending []saferetry.OperationRecord
	for rows.Next() {
		var rec saferetry.OperationRecord
		var fpText string
		var created int64
		if err := rows.Scan(&rec.Operation, &rec.Key, &fpText, &created); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending: %w", err)
		}
		if err := rec.Fingerprint.UnmarshalText([]byte(fpText)); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending %q: %w", rec.Operation, err)
		}
		rec.Created = time.Unix(0, created)
		pending = append(pending, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: pending: %w", err)
	}
	return pending, nil
}

// expired is the creation time, in Unix nanoseconds, at or before which
// an operation is past its TTL at now.
func (s *Store) expired(now time.Time) int64 { return now.Add(-s.ttl).UnixNano() }
