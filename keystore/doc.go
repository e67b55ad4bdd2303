// Package keystore holds saferetry's durable idempotency-key stores, in a
// module of their own so that the core keeps its three dependencies.
//
// An idempotency key protects a write only while the client remembers it.
// saferetry's KeyInjector keeps a request's key for as long as its retries
// last; a daemon that crashes after a charge reached the server, but before
// the answer came back, forgets it, and after a restart sends the charge
// again under a new key, which the server takes for a second charge. Name
// the operation (saferetry.WithOperation) and give the stack a durable
// saferetry.KeyStore (saferetry.WithKeyStore), and the key is recorded
// before the first byte is sent; after the restart the operation is sent
// again with the same key, and the server deduplicates it:
//
//   - sqlitestore: a SQLite file (pure Go, no cgo), for one machine; the
//     processes sharing the file share the keys.
//   - redisstore: Redis, for a fleet: any instance resuming an operation
//     gets the key it was first sent with.
//
// keystoretest checks a KeyStore against the contract KeyInjector relies
// on; cmd/durabledemo shows a crash mid-retry and one charge. See
// README.md.
package keystore
