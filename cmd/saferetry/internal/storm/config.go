package storm

import (
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/overload"
)

// Config is one retry configuration compared in a storm: how many retries,
// how they are spread, and what limits them.
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
	// Budget is what limits retries, one per service instance.
	Budget BudgetModel
	// Throttle is what rejects attempts locally, one per service
	// instance; ThrottleNone sends every attempt.
	Throttle ThrottleModel
	// K is the throttle's K, for ThrottleSaferetry.
	K float64
	// Overload, if set, replaces saferetry's defaults for BudgetSaferetry
	// and ThrottleSaferetry.
	Overload *overload.Config
}

func (c Config) overload() *overload.Config {
	if c.Overload != nil {
		return c.Overload
	}
	return saferetryConfig
}

// Budgeted reports whether the configuration limits retries.
func (c Config) Budgeted() bool { return c.Budget != BudgetNone }

// BudgetModel is a retry budget design, saferetry's or an anchor's.
type BudgetModel int

const (
	// BudgetNone: every retry the retry limit allows is made.
	BudgetNone BudgetModel = iota
	// BudgetSaferetry: saferetry.Budget's algorithm, the same code
	// (internal/overload), on virtual time.
	BudgetSaferetry
	// BudgetFinagle: saferetry's first budget, after Finagle's
	// RetryBudget: 10% of the requests of a 10 s sliding window (ten 1 s
	// slots), plus a floor of 10 retries/s kept as a reserve of 100 that
	// never expires.
	BudgetFinagle
	// BudgetGRPC: gRPC's retry throttling (proposal A6), with its
	// documented example settings: a token count per server starting at
	// maxTokens = 10, each failed attempt costs 1, each success earns 0.1,
	// and no retry is made while the count is at or below half.
	BudgetGRPC
	// BudgetAWS: the AWS SDK for Go v2's retry quota (standard mode):
	// 500 tokens per client, a retry costs 5 (10 after a timeout), a
	// successful retry refunds its cost, any other successful attempt
	// earns 1.
	BudgetAWS
)

// ThrottleModel is a client-side throttle design.
type ThrottleModel int

const (
	// ThrottleNone sends every attempt.
	ThrottleNone ThrottleModel = iota
	// ThrottleSaferetry: saferetry's adaptive throttle (internal/overload):
	// the SRE book's rule with K, over averages of ~2 s that decay
	// continuously; attempts rejected locally count as requests.
	ThrottleSaferetry
	// ThrottleFailsafe: failsafe-go v0.9.8's AdaptiveThrottler defaults:
	// rejects with probability (executions - successes/0.9) /
	// (executions + 1), at most 0.9, over a 1 minute window of 20 buckets
	// of 3 s; executions are the attempts that got an outcome (rejected
	// ones are not counted).
	ThrottleFailsafe
	// ThrottleEnvoy: Envoy's admission control filter defaults: rejects
	// with probability (requests - successes/0.95) / (requests + 1), at
	// most 0.8, over a 30 s window kept as 1 s samples; requests are those
	// that got an outcome, and a success is any status below 500.
	ThrottleEnvoy
)

// The configurations each scenario compares, in the order shown.
var (
	noRetries  = Config{Name: "no-retries", Label: "no retries", MaxRetries: 0, Jitter: saferetry.FullJitter}
	naive      = Config{Name: "naive", Label: "3 retries, full jitter, no budget", MaxRetries: 3, Jitter: saferetry.FullJitter}
	finagle    = Config{Name: "finagle", Label: "3 retries, saferetry's first budget (Finagle-style: 10%, floor 10/s)", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetFinagle}
	grpc       = Config{Name: "grpc", Label: "3 retries, gRPC A6 retry throttling (10 tokens, 0.1)", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetGRPC}
	aws        = Config{Name: "aws", Label: "3 retries, AWS SDK v2 retry quota (500, 5 per retry)", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetAWS}
	budget     = Config{Name: "saferetry", Label: "saferetry's budget (3 retries, full jitter)", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetSaferetry}
	throttled  = Config{Name: "saferetry+K2", Label: "saferetry's budget and throttle, K=2", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetSaferetry, Throttle: ThrottleSaferetry, K: 2}
	failsafeTh = Config{Name: "budget+failsafe", Label: "saferetry's budget, failsafe-go's adaptive throttler", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetSaferetry, Throttle: ThrottleFailsafe}
	envoyTh    = Config{Name: "budget+envoy", Label: "saferetry's budget, Envoy's admission control", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetSaferetry, Throttle: ThrottleEnvoy}
)

// Configs are the configurations of the classic storm (the -scenario
// storm table, live and simulated): no retries, then retries without and
// with jitter and budget.
var Configs = []Config{
	noRetries,
	{Name: "no-jitter", Label: "3 retries, no jitter, no budget", MaxRetries: 3, Jitter: saferetry.NoJitter},
	{Name: "full-jitter", Label: "3 retries, full jitter, no budget", MaxRetries: 3, Jitter: saferetry.FullJitter},
	{Name: "full+budget", Label: "3 retries, full jitter, budget", MaxRetries: 3, Jitter: saferetry.FullJitter, Budget: BudgetSaferetry},
	{Name: "decorr+budget", Label: "3 retries, decorrelated jitter, budget", MaxRetries: 3, Jitter: saferetry.DecorrelatedJitter, Budget: BudgetSaferetry},
}

// OverloadConfigs are the configurations the fleet, partial and
// metastable scenarios compare: no retries, retries without a budget, the
// anchors' budgets, saferetry's budget alone and with its throttle, and
// saferetry's budget with the anchors' throttles.
var OverloadConfigs = []Config{noRetries, naive, finagle, grpc, aws, budget, throttled, failsafeTh, envoyTh}

// The retry budget's defaults, as saferetry.NewBudget and the zero Budget
// apply them (internal/overload.Defaults), restated to compute the bound
// the budget promises; a test checks them against a real Budget.
const (
	// BudgetRatio is the retry each logical request earns.
	BudgetRatio = 0.1
	// BudgetAllowance is c, the retries a fresh host starts with and the
	// least its cap ever is.
	BudgetAllowance = 2.0
	// BudgetWindow is W: the cap is BudgetRatio x the requests of the
	// last ~BudgetWindow.
	BudgetWindow = 10 * time.Second
)

// saferetryConfig is the overload configuration of saferetry's budget.
var saferetryConfig = overload.NewConfig(overload.Defaults(BudgetRatio))
