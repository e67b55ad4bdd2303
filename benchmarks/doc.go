// Package benchmarks is a separate module of saferetry, so the core keeps its three dependencies.
package benchmarks
