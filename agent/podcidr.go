package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ErrPodCIDRMismatch: the range given by hand (ctl agent --pod-cidr) is
// not the one the control plane assigned to this node.
var ErrPodCIDRMismatch = errors.New("pod range differs from the assigned one")

// PodNetwork is the pod network's side of the range (network.Manager):
// it is given the node's range before any pod starts.
type PodNetwork interface {
	SetPodCIDR(cidr string) error
}

// podCIDRWaitLog is how often the wait for a range is logged again.
const podCIDRWaitLog = 15 * time.Second

// awaitPodCIDR waits until this node's Node has spec.podCIDR (the control
// plane's podcidr controller gives it once the Node is registered), checks
// it against Config.PodCIDR when that is set, and hands it to
// Config.PodNetwork. Pods start only after it returns.
func (a *Agent) awaitPodCIDR(ctx context.Context) (string, error) {
	start := time.Now()
	var lastLog time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var cidr string
		if o, ok := a.self.Get("", a.cfg.NodeName); ok {
			cidr = o.(*apiv1.Node).GetSpec().GetPodCIDR()
		}
		if cidr != "" {
			if a.cfg.PodCIDR != "" && a.cfg.PodCIDR != cidr {
				return "", fmt.Errorf("%w: --pod-cidr is %s but the control plane assigned %s to Node %s (spec.podCIDR): drop --pod-cidr, or give the one assigned",
					ErrPodCIDRMismatch, a.cfg.PodCIDR, cidr, a.cfg.NodeName)
			}
			if a.cfg.PodNetwork != nil {
				if err := a.cfg.PodNetwork.SetPodCIDR(cidr); err != nil {
					return "", fmt.Errorf("configure the pod network with %s: %w", cidr, err)
				}
			}
			a.podCIDR.Store(&cidr)
			a.log.Info("pod range assigned", "podCIDR", cidr, "waited", time.Since(start).Round(time.Millisecond))
			return cidr, nil
		}
		if time.Since(lastLog) >= podCIDRWaitLog {
			a.log.Info("waiting for the control plane to assign this node's pod range (Node spec.podCIDR); pods start once it has",
				"waited", time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// PodCIDR is the node's pod range once assigned ("" before).
func (a *Agent) PodCIDR() string {
	if p := a.podCIDR.Load(); p != nil {
		return *p
	}
	return ""
}
