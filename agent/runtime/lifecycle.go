package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/agent/probe"
)

// Lifecycle hooks, with Kubernetes' semantics:
//   - postStart runs right after the container's process starts; the
//     container's probes (so its readiness) start only when it returns, and
//     a failing hook kills the container, which then restarts by the pod's
//     restart policy (reason in the termination message).
//   - preStop runs before the stop signal, whenever the runtime stops a
//     container (pod deleted, liveness failure); it uses up the grace
//     period, and the signal still gets at least two seconds after it, as
//     kubelet gives.
//
// Exec and httpGet handlers run through agent/probe (exec in the
// container, HTTP dialled from the pod's network namespace, host default
// the pod IP); sleep waits.

// Lifecycle is Kubernetes' Lifecycle.
type Lifecycle struct {
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	PreStop   *LifecycleHandler `json:"preStop,omitempty"`
}

// LifecycleHandler has exactly one action.
type LifecycleHandler struct {
	Exec    *probe.ExecAction    `json:"exec,omitempty"`
	HTTPGet *probe.HTTPGetAction `json:"httpGet,omitempty"`
	Sleep   *SleepAction         `json:"sleep,omitempty"`
}

// SleepAction pauses for Seconds.
type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

// ErrHookFailed wraps a failed hook.
var ErrHookFailed = errors.New("lifecycle hook failed")

// minGraceAfterPreStop is what kubelet leaves the stop signal after a
// preStop hook that used up the grace period.
const minGraceAfterPreStop = 2 * time.Second

func (h *LifecycleHandler) validate(field string) error {
	n := 0
	for _, set := range []bool{h.Exec != nil, h.HTTPGet != nil, h.Sleep != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return invalid("%s: exactly one of exec, httpGet, sleep must be set", field)
	case h.Exec != nil && len(h.Exec.Command) == 0:
		return invalid("%s.exec.command: must not be empty", field)
	case h.HTTPGet != nil && (h.HTTPGet.Port < 1 || h.HTTPGet.Port > 65535):
		return invalid("%s.httpGet.port: %d out of range", field, h.HTTPGet.Port)
	case h.Sleep != nil && h.Sleep.Seconds < 0:
		return invalid("%s.sleep.seconds: %d must not be negative", field, h.Sleep.Seconds)
	}
	return nil
}

func (l *Lifecycle) validate(field string) error {
	if l == nil {
		return nil
	}
	for name, h := range map[string]*LifecycleHandler{"postStart": l.PostStart, "preStop": l.PreStop} {
		if h != nil {
			if err := h.validate(field + ".lifecycle." + name); err != nil {
				return err
			}
		}
	}
	return nil
}

// runHook runs h against c until it finishes or ctx ends.
func (p *podRT) runHook(ctx context.Context, c *ctrRT, name string, h *LifecycleHandler) error {
	if h.Sleep != nil {
		t := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: %s sleep: %w", ErrHookFailed, name, ctx.Err())
		}
	}
	pr := &probe.Probe{Exec: h.Exec, HTTPGet: h.HTTPGet}
	// The hook's bound is ctx, not a probe timeout.
	deadline := 24 * time.Hour
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if r := probe.Check(ctx, pr, p.probeTarget(c), deadline); !r.Success {
		return fmt.Errorf("%w: %s: %s", ErrHookFailed, name, r.Message)
	}
	return nil
}

// postStart runs c's postStart hook, if any; on failure it kills c (the
// caller then handles the exit like any other).
func (p *podRT) postStart(c *ctrRT) (exitInfo, bool) {
	lc := c.spec.Lifecycle
	if lc == nil || lc.PostStart == nil {
		return exitInfo{}, false
	}
	err := p.runHook(p.ctx, c, "postStart", lc.PostStart)
	// A pod stopping during the hook is stopped the normal way.
	if err == nil || p.ctx.Err() != nil {
		return exitInfo{}, false
	}
	msg := "FailedPostStartHook: " + err.Error()
	p.rt.log.Info("postStart hook failed, killing the container", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
	p.mu.Lock()
	c.killNote = msg
	grace := p.grace
	p.mu.Unlock()
	return p.kill(c, grace), true
}

// preStop runs c's preStop hook within grace and returns what is left of
// grace for the stop signal.
func (p *podRT) preStop(c *ctrRT, grace time.Duration) time.Duration {
	lc := c.spec.Lifecycle
	if lc == nil || lc.PreStop == nil || grace <= 0 {
		return grace
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := p.runHook(ctx, c, "preStop", lc.PreStop); err != nil {
		p.rt.log.Info("preStop hook failed", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
	}
	return max(grace-time.Since(start), minGraceAfterPreStop)
}
