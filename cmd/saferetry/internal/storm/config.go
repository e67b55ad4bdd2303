package storm

import (
	"time"

	"github.com/saferetry/saferetry"
)

// Config is one retry configuration compared in a storm.
type Config struct {
	// Name is a short identifier, for table columns and flags.
	Name string
	// Label describes the configuration in the chart's legend.
	Label string
	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int
	// Jitter is the backoff's jitter (the backoff bounds are the library's
	// defaults, 100 ms doubling to 10 s).
	Jitter saferetry.Jitter
	// Budget reports whether retries are limited by a retry budget, one
	// per service instance.
	Budget bool
}

// Configs are the configurations a storm compares, in the order shown: no
// retries at all, then retries without and with jitter and budget.
var Configs = []Config{
	{Name: "no-retries", Label: "no retries", MaxRetries: 0, Jitter: saferetry.FullJitter},
	{Name: "no-jitter", Label: "3 retries, no jitter, no budget", MaxRetries: 3, Jitter: saferetry.NoJitter},
	{Name: "full-jitter", Label: "3 retries, full jitter, no budget", MaxRetries: 3, Jitter: saferetry.FullJitter},
	{Name: "full+budget", Label: "3 retries, full jitter, budget", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: true},
	{Name: "decorr+budget", Label: "3 retries, decorrelated jitter, budget", MaxRetries: 3, Jitter: saferetry.DecorrelatedJitter, Budget: true},
}

// The retry budget's defaults, as saferetry.NewBudget() applies them. They
// are restated here to compute the bound the budget promises; a test checks
// them against a real Budget.
const (
	// BudgetRatio is the retries each logical request earns.
	BudgetRatio = 0.1
	// BudgetFloor is the retries per second allowed however little traffic
	// there is, kept as a reserve of BudgetFloor*window.
	BudgetFloor = 10.0
	// BudgetWindow is how long deposits and withdrawals count.
	BudgetWindow = 10 * time.Second
)
