package consensus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// TestForwardToSilentLeaderFailsAtOnce freezes the leader (its connections
// stay open and carry nothing, as with SIGSTOP) while a follower forwards
// a write to it. The follower gives the write up as soon as it stops
// following that leader (a heartbeat timeout), with an unknown outcome
// (the leader may have it), not at the caller's deadline.
func TestForwardToSilentLeaderFailsAtOnce(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	leader := c.MustLeader(t)
	f := followers(c, leader)[0]
	put(t, f.Store(), "/warm", "connection to the leader is open")
	leader.Fault.Freeze()
	t.Cleanup(leader.Fault.Thaw) // before the cluster closes

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := f.Store().Put(ctx, &storepb.PutRequest{Key: []byte("/k"), Value: []byte("v")})
	took := time.Since(start)
	if !errors.Is(err, consensus.ErrIndeterminate) {
		t.Fatalf("write forwarded to a frozen leader: want ErrIndeterminate, got %v after %v", err, took)
	}
	// Heartbeat timeout (up to twice the configured one, raft's jitter)
	// plus scheduling slack; far below the 30 s deadline.
	if limit := 2*f.Config().HeartbeatTimeout + 2*time.Second; took > limit {
		t.Fatalf("write forwarded to a frozen leader failed after %v, want within %v", took, limit)
	}
	// The follower serves writes through the new leader.
	testutil.WaitFor(t, 20*time.Second, "a write through the follower after the election", func() bool {
		_, err := f.Store().Put(ctxT(t), &storepb.PutRequest{Key: []byte("/after"), Value: []byte("x")})
		return err == nil
	})
}

// TestMembersHealthyAfterLeaderCutOffAndHealed cuts the leader off for 10 s
// (it steps down, another node leads), heals it, and asks for the members
// through it: all must show healthy within a few seconds. A node used to
// keep the failures it saw as leader for ever.
func TestMembersHealthyAfterLeaderCutOffAndHealed(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	old := c.MustLeader(t)
	old.Fault.Isolate()
	others := followers(c, old)
	testutil.WaitFor(t, 20*time.Second, "a new leader among the others", func() bool {
		for _, n := range others {
			if n.Store().IsLeader() {
				return true
			}
		}
		return false
	})
	// The cut lasts 10 s, as in the report that found the stale health.
	time.Sleep(10 * time.Second)
	// While cut off, it reports the others unhealthy.
	ms, err := old.Store().Members(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Id != old.ID && m.Healthy {
			t.Fatalf("cut-off node shows %s healthy: %+v", m.Id, m)
		}
	}
	old.Fault.Heal()
	healed := time.Now()
	var last []*storepb.Member
	testutil.WaitFor(t, 5*time.Second, "every member healthy through the healed node", func() bool {
		last, err = old.Store().Members(ctxT(t))
		if err != nil {
			return false
		}
		for _, m := range last {
			if !m.Healthy {
				return false
			}
		}
		return len(last) == 3
	})
	t.Logf("all healthy through %s %v after healing: %v", old.ID, time.Since(healed).Round(time.Millisecond), last)
}
