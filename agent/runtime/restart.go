package runtime

import "time"

// The restart decision, in swarmkit's exec.Do shape: what happens to a
// container that just exited is a pure function of its state and what was
// observed, so every case is a table test needing no root and no
// container (restart_test.go). podRT.runContainer only carries it out:
// records the final state, or waits the delay and starts again.

// backoffPolicy is CrashLoopBackOff's: the delay doubles per restart from
// Base up to Max; an attempt that ran at least Reset starts over.
type backoffPolicy struct {
	Base, Max, Reset time.Duration
}

// delay is the wait before attempt n (n ≥ 1) of a failing container.
func (b backoffPolicy) delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// exited is the state and observation the decision reads.
type exited struct {
	Policy RestartPolicy
	// Init: an init container (restarted on failure unless Never,
	// whatever the pod's policy, as in Kubernetes).
	Init bool
	// Stopping: the pod is being stopped; nothing restarts.
	Stopping bool
	ExitCode int32
	// Ran is how long the attempt ran.
	Ran time.Duration
	// Restarts is the crash-loop count before this exit.
	Restarts int
}

// afterExit is the decision.
type afterExit struct {
	Restart bool
	// Restarts is the new crash-loop count and Delay the back-off before
	// the next attempt (when Restart).
	Restarts int
	Delay    time.Duration
	// InitFailed: an init container failed for good, which fails the pod.
	InitFailed bool
	// Succeeded: the container ended for good with exit 0 (an init
	// container that lets the next one start).
	Succeeded bool
}

// decideAfterExit is the next state of a container that exited.
func decideAfterExit(b backoffPolicy, e exited) afterExit {
	restart := false
	switch {
	case e.Stopping:
	case e.Init:
		restart = e.ExitCode != 0 && e.Policy != RestartNever
	case e.Policy == RestartAlways, e.Policy == "":
		restart = true
	case e.Policy == RestartOnFailure:
		restart = e.ExitCode != 0
	}
	if !restart {
		return afterExit{
			Restarts:   e.Restarts,
			InitFailed: e.Init && e.ExitCode != 0 && !e.Stopping,
			Succeeded:  e.ExitCode == 0 && !e.Stopping,
		}
	}
	n := e.Restarts
	if e.Ran >= b.Reset {
		n = 0 // it ran long enough: not a crash loop
	}
	n++
	return afterExit{Restart: true, Restarts: n, Delay: b.delay(n)}
}

func (r *Runtime) backoffPolicy() backoffPolicy {
	return backoffPolicy{Base: r.cfg.BackoffBase, Max: r.cfg.BackoffMax, Reset: r.cfg.BackoffReset}
}
