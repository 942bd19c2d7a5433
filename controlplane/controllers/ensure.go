package controllers

import (
	"context"
	"log/slog"
	"time"
)

// EnsureEvery runs ensure every period until ctx ends: the loop of a
// controller that keeps one thing in place (the kubernetes Service, the
// cluster DNS Service). A failure is logged as "<what> not in place" and
// retried sooner, from a second doubling up to period.
func EnsureEvery(ctx context.Context, period time.Duration, log *slog.Logger, what string, ensure func(context.Context) error) error {
	retry := time.Second
	for {
		wait := period
		if err := ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn(what+" not in place", "err", err)
			wait, retry = min(retry, period), min(retry*2, period)
		} else {
			retry = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
