package multihost_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

type pod = hostlab.Pod

// waitPods waits until want(pods) holds for the pods with label app=app
// and returns them.
func waitPods(t *testing.T, c *hostlab.Cluster, timeout time.Duration, ns, app, what string, want func([]pod) bool) []pod {
	t.Helper()
	var ps []pod
	var lastErr error
	ok := testutil.Eventually(timeout, func() bool {
		ps, lastErr = c.Pods(ns, "app="+app)
		return lastErr == nil && want(ps)
	})
	if !ok {
		t.Fatalf("timed out after %s waiting for %s (last error %v); pods:\n%s", timeout, what, lastErr, describePods(ps))
	}
	return ps
}

func describePods(ps []pod) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s on %q phase %s ip %s ready %v restarts %d\n", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.Ready(), p.Restarts())
	}
	return b.String()
}

// leaderHost is the control host whose node leads, from ctl members.
func leaderHost(t *testing.T, c *hostlab.Cluster) *hostlab.Host {
	t.Helper()
	var lead *hostlab.Host
	testutil.WaitFor(t, 30*time.Second, "a leader in ctl members", func() bool {
		out, err := c.Ctl("members")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 6 && f[4] == "yes" {
				lead = c.Host(f[0])
				return lead != nil
			}
		}
		return false
	})
	return lead
}

func waitNodesReady(t *testing.T, c *hostlab.Cluster, timeout time.Duration, names ...string) {
	t.Helper()
	testutil.WaitFor(t, timeout, fmt.Sprintf("nodes %v Ready", names), func() bool {
		ns, err := c.Nodes()
		if err != nil {
			return false
		}
		for _, n := range names {
			if ns[n].Ready().Status != "True" {
				return false
			}
		}
		return true
	})
}
