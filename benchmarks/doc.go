// Package benchmarks compares saferetry with the bare pooled transport and
// with the other Go retry libraries (go-retryablehttp, failsafe-go's
// failsafehttp, rehttp) on the same loopback scenarios, each library
// configured alike (README.md says how). It is a separate module so that
// the core keeps its three dependencies.
//
// Everything is in the tests: the benchmarks, the loopback server, the
// contenders' configurations, and TestContendersRetry, which fails if a
// contender as configured stops retrying (a benchmark of a library that
// no longer retries would flatter it). run.sh runs the benchmarks and
// prints benchstat's table and each contender's ratios to the bare
// transport (cmd/ratios).
package benchmarks
