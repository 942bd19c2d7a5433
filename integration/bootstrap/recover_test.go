package bootstrap_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQuorumLossRecover loses two of three control nodes for good, runs
// `ctl recover` on the survivor's data dir and checks that writes work
// again, that every acknowledged object is there, and that a new control
// node can join the recovered cluster.
func TestQuorumLossRecover(t *testing.T) {
	c, controlToken, _ := newCluster(t, "q1")
	c.joinControl(t, "q2", controlToken)
	c.joinControl(t, "q3", controlToken)
	c.waitMembers(t, 60*time.Second, voters("q1", "q2", "q3"))

	var acked []string
	for i := 0; i < 5; i++ {
		ns := fmt.Sprintf("acked-%d", i)
		c.applyNamespace(t, ns)
		c.applyConfigMap(t, ns, "cm", fmt.Sprintf("value %d", i))
		acked = append(acked, ns)
	}

	survivor := c.nodes[0]
	for _, n := range c.nodes[1:] {
		n.p.kill() // for good: their data dirs are never used again
	}
	if _, errs, code := c.ctl(t, "--request-timeout", "3s", "create", "namespace", "without-quorum"); code == 0 {
		t.Fatalf("a write succeeded with 1 of 3 control nodes; quorum must be lost")
	} else {
		t.Logf("without quorum: %s", strings.TrimSpace(errs))
	}
	survivor.p.kill()
	mustFail(t, "--data-dir is required", "recover")

	rec := &node{owner: t, name: "q1-recover", dataDir: survivor.dataDir, apiPort: survivor.apiPort,
		args: []string{"recover", "--gossip=false", "--data-dir", survivor.dataDir}}
	rec.start()
	rec.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`control node q1 serving`))
	if !strings.Contains(rec.p.out.String(), "recovered") {
		t.Fatalf("ctl recover did not say what it did:\n%s", rec.p.out.String())
	}
	c.nodes = []*node{rec}
	c.applyNamespace(t, "after-recover")
	for i, ns := range acked {
		out := c.mustCtl(t, "get", "configmap", "cm", "-n", ns, "-o", "yaml")
		if !strings.Contains(out, fmt.Sprintf("value %d", i)) {
			t.Errorf("acknowledged configmap %s/cm lost its data after recovery:\n%s", ns, out)
		}
	}
	c.waitMembers(t, 30*time.Second, voters("q1"))

	// The recovered node restarts like any other (no second recovery), and
	// others rejoin with empty data dirs and a new token.
	rec.p.stop(t)
	restart := &node{owner: t, name: "q1", dataDir: survivor.dataDir, apiPort: survivor.apiPort, args: survivor.args}
	restart.start()
	restart.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`control node q1 serving`))
	c.nodes = []*node{restart}
	tok := strings.TrimSpace(c.eventuallyCtl(t, 30*time.Second, "token", "create", "--role", "control"))
	c.joinControl(t, "q4", tok)
	want := voters("q1")
	want["q4"] = "non-voter"
	c.waitMembers(t, 60*time.Second, want)
	if out := c.mustCtl(t, "get", "namespaces"); !strings.Contains(out, "after-recover") || !strings.Contains(out, "acked-4") {
		t.Fatalf("after rejoin, namespaces are missing:\n%s", out)
	}

	// A member leaves for good: stop it, remove it.
	c.nodes[1].p.stop(t)
	if out := c.mustCtl(t, "member", "remove", "q4"); !strings.Contains(out, "member q4 removed") {
		t.Fatalf("member remove: %s", out)
	}
	c.waitMembers(t, 30*time.Second, voters("q1"))
	mustFail(t, `no control node "q4"`, "--config", c.admin, "--server", c.servers(), "member", "remove", "q4")
}
