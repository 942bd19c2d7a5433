package consensus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// TestLoneSurvivorFailsFastNamingRecover stops two of three nodes. The
// survivor (the leader until then) answers a read that meets the loss of
// leadership with Unavailable, not FailedPrecondition; once it knows it has
// no leader, a write and a linearizable read fail within the election
// timeout, Unavailable, with a message naming the cause and `ctl recover`.
func TestLoneSurvivorFailsFastNamingRecover(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	leader := c.MustLeader(t)
	survivor := leader.Store()
	put(t, survivor, "/k", "v")
	for _, n := range followers(c, leader) {
		n.Stop()
	}
	election := leader.Config().ElectionTimeout

	// Right after the loss the leader's read check fails, retryably. (A
	// heartbeat answered just before the stop may still let one through.)
	var err error
	testutil.WaitFor(t, 10*time.Second, "a linearizable read on the survivor fails", func() bool {
		_, err = survivor.Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/k")})
		return err != nil
	})
	if code := status.Code(consensus.ToStatus(err)); code != codes.Unavailable ||
		!(errors.Is(err, consensus.ErrLeadershipLost) || errors.Is(err, consensus.ErrNoQuorum)) {
		t.Fatalf("read as leadership is lost: %v (code %s), want Unavailable (leadership lost or quorum lost)", err, code)
	}

	testutil.WaitFor(t, 10*time.Second, "the survivor knows it has no leader", func() bool {
		_, addr := survivor.Leader()
		return addr == ""
	})
	check := func(what string, call func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s without a quorum succeeded", what)
		}
		if took > election {
			t.Errorf("%s took %s to fail, want within the election timeout %s", what, took, election)
		}
		st := status.Convert(consensus.ToStatus(err))
		if !errors.Is(err, consensus.ErrNoQuorum) || st.Code() != codes.Unavailable ||
			!strings.Contains(st.Message(), "quorum lost") || !strings.Contains(st.Message(), "ctl recover") {
			t.Errorf("%s: %v (code %s), want Unavailable naming quorum lost and ctl recover", what, err, st.Code())
		}
	}
	check("write", func(ctx context.Context) error {
		_, err := survivor.Put(ctx, &storepb.PutRequest{Key: []byte("/k"), Value: []byte("w")})
		return err
	})
	check("linearizable read", func(ctx context.Context) error {
		_, err := survivor.Range(ctx, &storepb.RangeRequest{Key: []byte("/k")})
		return err
	})
	// A stale read still answers from local state.
	if resp, err := survivor.Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/k"), Stale: true}); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("stale read on the survivor: %v %v", resp, err)
	}
}
