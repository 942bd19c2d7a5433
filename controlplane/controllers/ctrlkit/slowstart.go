package ctrlkit

import (
	"errors"
	"sync"
)

// SlowStart runs op on items in growing parallel batches (1, 2, 4 …) and
// stops at the first batch with an error, as Kubernetes does: a quota or
// admission failure costs one call, not hundreds. A panicking op is an
// ErrPanic error (which ends the loop's Run when the sync returns it).
func SlowStart(items []string, op func(string) error) (done []string, err error) {
	for batch := 1; len(items) > 0; batch *= 2 {
		n := min(batch, len(items))
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer Recovered("slow start of "+items[i], &errs[i])
				errs[i] = op(items[i])
			}()
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			if errs[i] == nil {
				done = append(done, items[i])
			}
		}
		if err := errors.Join(errs...); err != nil {
			return done, err
		}
		items = items[n:]
	}
	return done, nil
}

// SlowStartBatches is SlowStart with each wave sent as one call: op
// returns an error per item (nil: done), or one error for the whole wave.
func SlowStartBatches(items []string, op func(batch []string) ([]error, error)) (done []string, err error) {
	for batch := 1; len(items) > 0; batch *= 2 {
		n := min(batch, len(items))
		errs, callErr := op(items[:n])
		if callErr != nil {
			return done, callErr
		}
		for i := 0; i < n; i++ {
			if errs[i] == nil {
				done = append(done, items[i])
			}
		}
		if err := errors.Join(errs...); err != nil {
			return done, err
		}
		items = items[n:]
	}
	return done, nil
}
