//go:build !saferetry_overload

package saferetryotel

import "github.com/saferetry/saferetry"

// newerStopName names stop reasons this build does not know yet: none
// until the overload branch (StopThrottled) is merged; see overload.go.
func newerStopName(saferetry.StopReason) (string, bool) { return "", false }

// newerStopOf recognises the errors of stops this build does not know
// yet: none; see overload.go.
func newerStopOf(error) (saferetry.StopReason, bool) { return saferetry.StopNone, false }
