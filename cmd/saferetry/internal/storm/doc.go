// Package storm measures retry storms, for the saferetry storm command.
//
// A retry storm is what a fleet of clients does to an upstream that fails:
// every failed request comes back as up to MaxRetries more, so a full outage
// multiplies the load by (1 + retries) exactly when the server can least take
// it, and the backlog of retries can keep it down once it recovers; a server
// that queues work can stay down after its trigger is gone (metastable
// failure). The command shows this over real loopback HTTP and in a
// discrete-event simulation of up to a million clients, and compares retry
// configurations side by side; this package holds what both halves share:
//
//   - [Configs] and [OverloadConfigs], the configurations compared:
//     saferetry's, and the anchors' budgets and throttles, modelled from
//     their sources;
//   - [Recorder], per-100 ms counts of attempts (served or rejected),
//     retries, local rejections and logical requests, plus a latency
//     histogram, safe for concurrent use;
//   - [Summarize], the table's figures, and [Bound], the amplification the
//     retry budget promises;
//   - [Simulate], the simulation, which drives the library's own
//     Exponential backoff, DefaultStrategy and overload control
//     (internal/overload, the code behind saferetry.Budget) on a virtual
//     clock, against a server that answers at once or queues;
//   - [Fleet] and [Metastable], the scenarios that sweep fleet sizes and
//     loads;
//   - [Chart], a hand-written SVG chart of a quantity over time.
package storm
