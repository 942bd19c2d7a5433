package bootstrap_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPlannedStopHandsLeadershipOverOnWAL runs three control nodes made
// with --raft-log-store wal. The data dir records the store; a restart
// naming boltdb is refused with the flag to use. SIGTERM of the leader
// hands leadership to another node before it stops (its log says so), and
// the others write on at once; the node restarts from its data dir.
func TestPlannedStopHandsLeadershipOverOnWAL(t *testing.T) {
	c := &cluster{t: t, dir: t.TempDir()}
	first, args := c.controlArgs(t, "h1")
	first.args = append([]string{"init", "--raft-log-store", "wal"}, args...)
	first.start()
	c.nodes = append(c.nodes, first)
	m := first.p.waitOutput(t, 60*time.Second, reControlJoin)
	c.admin = filepath.Join(first.dataDir, "admin.conf")
	for _, name := range []string{"h2", "h3"} {
		n, args := c.controlArgs(t, name)
		n.args = append(append([]string{"join", "--control", "--raft-log-store", "wal", "--token", m[1]}, args...), first.api())
		n.start()
		n.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`control node `+name+` serving`))
		c.nodes = append(c.nodes, n)
	}
	ms := c.waitMembers(t, 60*time.Second, voters("h1", "h2", "h3"))
	var leader *node
	for _, n := range c.nodes {
		if ms[n.name].leader == "yes" {
			leader = n
		}
		if b, err := os.ReadFile(filepath.Join(n.dataDir, "raft", "log-store")); err != nil || strings.TrimSpace(string(b)) != "wal" {
			t.Fatalf("%s: log-store record %q (%v), want wal", n.name, b, err)
		}
	}
	if leader == nil {
		t.Fatalf("no leader in %v", ms)
	}

	stopped := time.Now()
	leader.p.stop(t)
	if !strings.Contains(leader.p.err.String(), "handed leadership over") {
		t.Fatalf("%s stopped as leader without handing leadership over:\n%s", leader.name, tail(leader.p.err.String(), 20))
	}
	c.applyNamespace(t, "after-handover")
	t.Logf("SIGTERM of leader %s to a write acknowledged by the others: %v", leader.name, time.Since(stopped).Round(time.Millisecond))

	bolt := slices.Clone(leader.args)
	bolt[slices.Index(bolt, "wal")] = "boltdb"
	mustFail(t, "--raft-log-store wal", bolt...)
	leader.start()
	c.waitMembers(t, 60*time.Second, voters("h1", "h2", "h3"))
}
