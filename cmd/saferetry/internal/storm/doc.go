// Package storm measures retry storms, for the saferetry storm command.
//
// A retry storm is what a fleet of clients does to an upstream that fails:
// every failed request comes back as up to MaxRetries more, so a full outage
// multiplies the load by (1 + retries) exactly when the server can least take
// it, and the backlog of retries can keep it down once it recovers. The
// command shows this twice, over real loopback HTTP and in a discrete-event
// simulation of up to a million clients, and compares configurations of the
// saferetry stack side by side; this package holds what both halves share:
//
//   - [Configs], the configurations compared;
//   - [Recorder], per-100 ms counts of attempts (served or rejected) and of
//     logical requests, plus a latency histogram, safe for concurrent use;
//   - [Summarize], the table's figures, and [Bound], the amplification the
//     retry budget promises;
//   - [Simulate], the simulation, which drives the library's own
//     Exponential backoff, Budget and DefaultStrategy on a virtual clock;
//   - [Chart], a hand-written SVG chart of attempts over time.
package storm
