package saferetry

// TEMPORARY until budget.go and bodycache.go land from their helpers.

import (
	"errors"
	"net/http"
)

var ErrBudgetExhausted = errors.New("saferetry: retry budget exhausted")
var ErrBodyNotReplayable = errors.New("saferetry: request body cannot be replayed")

type Budget struct{}

func NewBudget() *Budget                    { return &Budget{} }
func (b *Budget) Deposit(host string)       {}
func (b *Budget) Withdraw(host string) bool { return true }

type BodyCache struct {
	Base         http.RoundTripper
	MaxBodyBytes int64
}

func (c *BodyCache) RoundTrip(req *http.Request) (*http.Response, error) {
	return c.Base.RoundTrip(req)
}
func (c *BodyCache) CloseIdleConnections() { closeIdleConnections(c.Base) }

const DefaultMaxBodyBytes = 1 << 20
