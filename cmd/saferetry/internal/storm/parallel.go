package storm

import (
	"context"
	"runtime"
	"sync"
)

// inParallel calls run(i) for every i in [0, n), on up to workers
// goroutines (zero or less: GOMAXPROCS), taking the i in order. run
// returns what to do with its result: commit is called under a lock, one
// at a time, so it may write shared results. inParallel stops handing out
// work at the first error (run's, or the context's cause once ctx is done)
// and returns it; the runs' results never depend on workers.
func inParallel(ctx context.Context, n, workers int, run func(i int) (commit func(), err error)) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				if first == nil && ctx.Err() != nil {
					first = context.Cause(ctx)
				}
				if first != nil || next == n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				commit, err := run(i)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else if commit != nil {
					commit()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
