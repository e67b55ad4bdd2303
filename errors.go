package saferetry

import (
	"errors"
	"strconv"
)

// StopReason says why the retry loop stopped and handed an outcome back.
// The zero value, StopNone, means the outcome needed no retry (a success or
// an answer the strategy accepted as final).
type StopReason int

const (
	// StopNone: the outcome was final by itself (success or a plain answer).
	StopNone StopReason = iota
	// StopNotRetryable: the strategy judged the failure unsafe or useless
	// to retry (for example a 500 on an unkeyed POST, or a bad certificate).
	StopNotRetryable
	// StopMaxRetries: every allowed retry was spent.
	StopMaxRetries
	// StopBudget: the retry budget for the host was empty.
	StopBudget
	// StopDeadline: the next wait would end after the context's deadline.
	StopDeadline
	// StopRetryAfterTooLong: the server's Retry-After exceeded the cap.
	StopRetryAfterTooLong
	// StopBodyNotReplayable: the request body could not be sent again.
	StopBodyNotReplayable
	// StopCanceled: the caller's context ended while retrying.
	StopCanceled
	// StopThrottled: adaptive throttling refused the retry locally (the
	// host's recent answers show overload); nothing more was sent.
	StopThrottled
)

var stopReasonNames = [...]string{
	StopNone:              "none",
	StopNotRetryable:      "not retryable",
	StopMaxRetries:        "max retries",
	StopBudget:            "retry budget exhausted",
	StopDeadline:          "deadline",
	StopRetryAfterTooLong: "Retry-After over the cap",
	StopBodyNotReplayable: "body not replayable",
	StopCanceled:          "canceled",
	StopThrottled:         "throttled",
}

// String returns a short human-readable name for the reason.
func (r StopReason) String() string {
	if r >= 0 && int(r) < len(stopReasonNames) {
		return stopReasonNames[r]
	}
	return "StopReason(" + strconv.Itoa(int(r)) + ")"
}

// ErrThrottled is returned when adaptive throttling refused to send a
// request: the host's recent answers show it is overloaded (429, 503,
// refused connections, attempt timeouts), so the request was refused
// locally, with a probability that grows with the overload, and nothing
// was sent. A refused first attempt returns an error wrapping it; a
// refused retry hands back the last real response, marked
// StopThrottled, or a *RetryError that matches it with errors.Is.
var ErrThrottled = errors.New("saferetry: throttled: the host is overloaded; the request was not sent")

// ErrAttemptTimeout is wrapped by the error of an attempt that exceeded
// the Transport's AttemptTimeout before its response headers arrived.
var ErrAttemptTimeout = errors.New("saferetry: attempt timed out awaiting response headers")

// RetryError is returned when the retry loop ends on an error after having
// retried, or when a retry was refused for a reason the caller may want to
// act on (budget, deadline, body). It unwraps to the last underlying error,
// and errors.Is matches ErrBudgetExhausted or ErrBodyNotReplayable when that
// was the reason.
type RetryError struct {
	Attempts int        // attempts made, the first included
	Reason   StopReason // why no further attempt was made
	Err      error      // the last attempt's error (or the context's cause)
}

// Error implements error.
func (e *RetryError) Error() string {
	return "saferetry: giving up after " + strconv.Itoa(e.Attempts) + " attempt(s) (" +
		e.Reason.String() + "): " + errString(e.Err)
}

// Unwrap returns the last underlying error.
func (e *RetryError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel for e's stop reason.
func (e *RetryError) Is(target error) bool {
	switch target {
	case ErrBudgetExhausted:
		return e.Reason == StopBudget
	case ErrBodyNotReplayable:
		return e.Reason == StopBodyNotReplayable
	case ErrThrottled:
		return e.Reason == StopThrottled
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
