package saferetry

// The retry loop's view of a Budget. Temporary: the overload work replaces
// these with the budget's own unexported methods.

func (b *Budget) deposit(host string) { b.Deposit(host) }

func (b *Budget) withdraw(host string) bool { return b.Withdraw(host) }

func (b *Budget) admit(host string, k float64) bool { return true }

func (b *Budget) record(host string, accepted bool) {}
