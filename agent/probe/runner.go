package probe

import (
	"context"
	"time"
)

// Kind of probe.
type Kind string

const (
	Startup   Kind = "startup"
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
)

// Set is a container's probes; nil ones are absent.
type Set struct {
	Startup, Liveness, Readiness *Probe
}

// Events are the runner's reports to the runtime. They are called from the
// runner's goroutines and must not block for long.
type Events struct {
	// Started: the startup probe succeeded (at once if there is none).
	Started func()
	// Ready: readiness changed (true at start if there is no readiness probe).
	Ready func(ready bool)
	// Unhealthy: liveness or startup failed failureThreshold times in a row;
	// the container should be restarted. Reported once per Run.
	Unhealthy func(kind Kind, message string)
}

// Runner runs one container's probes.
type Runner struct {
	// Unit is how long a "second" of the probe fields lasts (time.Second in
	// production; tests may shrink it).
	Unit time.Duration
	// Metrics, when set, counts the checks' results.
	Metrics *Metrics
}

// Run probes t until ctx ends or the container is found unhealthy.
// containerStart is when the container started (initialDelaySeconds counts
// from it).
func (r Runner) Run(ctx context.Context, set Set, t Target, containerStart time.Time, ev Events) {
	unit := r.Unit
	if unit <= 0 {
		unit = time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	unhealthy := func(k Kind, msg string) {
		cancel()
		if ev.Unhealthy != nil {
			ev.Unhealthy(k, msg)
		}
	}
	if set.Startup != nil {
		ok := r.loop(ctx, Startup, set.Startup, t, containerStart, unit, func(res Result, succ, fail int32) bool {
			if res.Success {
				return false // started: stop the startup loop
			}
			if fail >= orDefault(set.Startup.FailureThreshold, 3) {
				unhealthy(Startup, res.Message)
				return false
			}
			return true
		})
		if !ok || ctx.Err() != nil {
			return
		}
	}
	if ev.Started != nil {
		ev.Started()
	}
	done := make(chan struct{}, 2)
	running := 0
	if set.Liveness != nil {
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			r.loop(ctx, Liveness, set.Liveness, t, containerStart, unit, func(res Result, _, fail int32) bool {
				if !res.Success && fail >= orDefault(set.Liveness.FailureThreshold, 3) {
					unhealthy(Liveness, res.Message)
					return false
				}
				return true
			})
		}()
	}
	if set.Readiness != nil {
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			ready := false
			r.loop(ctx, Readiness, set.Readiness, t, containerStart, unit, func(res Result, succ, fail int32) bool {
				switch {
				case res.Success && !ready && succ >= orDefault(set.Readiness.SuccessThreshold, 1):
					ready = true
				case !res.Success && ready && fail >= orDefault(set.Readiness.FailureThreshold, 3):
					ready = false
				default:
					return true
				}
				if ev.Ready != nil {
					ev.Ready(ready)
				}
				return true
			})
		}()
	} else if ev.Ready != nil {
		ev.Ready(true)
	}
	for ; running > 0; running-- {
		<-done
	}
}

// loop runs p every period after the initial delay, counting consecutive
// successes and failures, until step returns false or ctx ends. It returns
// false if ctx ended.
func (r Runner) loop(ctx context.Context, kind Kind, p *Probe, t Target, start time.Time, unit time.Duration, step func(Result, int32, int32) bool) bool {
	delay := time.Until(start.Add(time.Duration(p.InitialDelaySeconds) * unit))
	period := time.Duration(orDefault(p.PeriodSeconds, 10)) * unit
	timeout := time.Duration(orDefault(p.TimeoutSeconds, 1)) * unit
	if delay > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
	var succ, fail int32
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		checked := time.Now()
		res := Check(ctx, p, t, timeout)
		if ctx.Err() != nil {
			return false
		}
		r.Metrics.observe(kind, res, time.Since(checked))
		if res.Success {
			succ, fail = succ+1, 0
		} else {
			succ, fail = 0, fail+1
		}
		if !step(res, succ, fail) {
			return ctx.Err() == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
