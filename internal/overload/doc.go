// Package overload holds saferetry's per-host overload control, the retry
// budget and the adaptive throttle, with the time passed in explicitly.
//
// saferetry.Budget calls it with the process's monotonic clock; the storm
// simulator (cmd/saferetry/internal/storm) calls the same code with
// virtual time, so what the simulator measures is what the library does.
// Times are durations since an origin the caller picks and keeps; a time
// earlier than one already seen by a host counts as that later time.
package overload
