package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s *consensus.Store, k, v string) *storepb.PutResponse {
	t.Helper()
	resp, err := s.Put(ctxT(t), &storepb.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("put %s on %s: %v", k, s.ID(), err)
	}
	return resp
}

func get(t *testing.T, s *consensus.Store, k string) string {
	t.Helper()
	kv, _, err := s.Get(ctxT(t), []byte(k))
	if err != nil {
		t.Fatalf("get %s on %s: %v", k, s.ID(), err)
	}
	if kv == nil {
		return ""
	}
	return string(kv.Value)
}

func followers(c *consensustest.Cluster, leader *consensustest.Node) []*consensustest.Node {
	var out []*consensustest.Node
	for _, n := range c.Running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

func TestThreeNodesForwardAndReadYourWrite(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	leader := c.MustLeader(t)
	fs := followers(c, leader)
	if len(fs) != 2 {
		t.Fatalf("want 2 followers, have %d", len(fs))
	}
	// A write on a follower is forwarded; every node reads it back at once.
	for i, n := range c.Running() {
		k := fmt.Sprintf("/k/%d", i)
		put(t, n.Store(), k, "v-"+n.ID)
		for _, m := range c.Running() {
			if got := get(t, m.Store(), k); got != "v-"+n.ID {
				t.Fatalf("node %s reads %s = %q right after %s wrote it, want %q", m.ID, k, got, n.ID, "v-"+n.ID)
			}
		}
	}
	members, err := fs[0].Store().Members(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range members {
		if m.Suffrage == storepb.Member_VOTER {
			voters++
		}
		if !m.Healthy {
			t.Errorf("member %s unhealthy: %v", m.Id, m)
		}
	}
	if voters != 3 {
		t.Fatalf("want 3 voters, got %d: %v", voters, members)
	}
}

func TestLeaderKilledNewLeaderWritesGoOn(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	old := c.MustLeader(t)
	put(t, old.Store(), "/before", "1")
	old.Stop()
	start := time.Now()
	nl := c.MustLeader(t)
	t.Logf("new leader %s after %s", nl.ID, time.Since(start))
	if nl == old {
		t.Fatal("stopped node still leader")
	}
	for _, n := range c.Running() {
		put(t, n.Store(), "/after-"+n.ID, "2")
		if got := get(t, n.Store(), "/before"); got != "1" {
			t.Fatalf("%s lost /before: %q", n.ID, got)
		}
	}
	// The old leader comes back as a follower and catches up.
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "old leader catches up", func() bool {
		kv, _, err := old.Store().Get(context.Background(), []byte("/after-"+nl.ID))
		return err == nil && kv != nil
	})
}

func TestNoQuorumWritesFailWithClearError(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	for _, f := range followers(c, l) {
		f.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.Store().Put(ctx, &storepb.PutRequest{Key: []byte("/x"), Value: []byte("y")})
	if err == nil {
		t.Fatal("write without quorum succeeded")
	}
	if !errors.Is(err, consensus.ErrNoLeader) && !errors.Is(err, consensus.ErrIndeterminate) {
		t.Fatalf("want ErrNoLeader or ErrIndeterminate, got %v", err)
	}
}

func TestBatchThroughFollowerIsOneEntryWithPerTxnResults(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	leader := c.MustLeader(t)
	f := followers(c, leader)[0]
	put(t, leader.Store(), "/batch/taken", "x")
	var txns []*storepb.TxnRequest
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("/batch/%03d", i)
		if i == 50 {
			k = "/batch/taken"
		}
		txns = append(txns, &storepb.TxnRequest{
			Compare: []*storepb.Compare{{Key: []byte(k), Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL, Number: 0}},
			Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(k), Value: []byte("v")}}}},
		})
	}
	before := leader.Store().AppliedIndex()
	res, err := f.Store().Batch(ctxT(t), txns)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if want := i != 50; r.GetTxn().GetSucceeded() != want {
			t.Errorf("txn %d: succeeded=%v, want %v (%v)", i, r.GetTxn().GetSucceeded(), want, r)
		}
	}
	// Read-your-writes on the follower, and the 99 writes took one entry.
	if got := get(t, f.Store(), "/batch/099"); got != "v" {
		t.Fatalf("follower reads %q after its batch, want v", got)
	}
	if d := leader.Store().AppliedIndex() - before; d != 1 {
		t.Errorf("batch took %d log entries, want 1", d)
	}
	if _, err := f.Store().Batch(ctxT(t), make([]*storepb.TxnRequest, consensus.MaxBatchTxns+1)); !errors.Is(err, consensus.ErrInvalid) {
		t.Errorf("oversized batch: want ErrInvalid, got %v", err)
	}
	// 12 MiB of values through a follower: split into entries that each
	// fit the forwarding call, results still one per txn, in order.
	big := make([]*storepb.TxnRequest, 12)
	for i := range big {
		big[i] = &storepb.TxnRequest{Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{
			Key: []byte(fmt.Sprintf("/batch/big/%02d", i)), Value: make([]byte, 1<<20)}}}}}
	}
	res, err = f.Store().Batch(ctxT(t), big)
	if err != nil {
		t.Fatalf("12 MiB batch through a follower: %v", err)
	}
	for i, r := range res {
		if !r.GetTxn().GetSucceeded() || len(r.GetTxn().GetResponses()) != 1 {
			t.Fatalf("big txn %d: %v", i, r)
		}
	}
	if kv, _, err := f.Store().Get(ctxT(t), []byte("/batch/big/11")); err != nil || len(kv.GetValue()) != 1<<20 {
		t.Fatalf("last big value: %v, %v", len(kv.GetValue()), err)
	}
}

func TestTxnBatcherGroupsConcurrentTxns(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	leader := c.MustLeader(t)
	f := followers(c, leader)[0]
	b := consensus.NewTxnBatcher(f.Store(), 2)
	put(t, leader.Store(), "/grp/taken", "x")
	create := func(k string) *storepb.TxnRequest {
		return &storepb.TxnRequest{
			Compare: []*storepb.Compare{{Key: []byte(k), Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL, Number: 0}},
			Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(k), Value: []byte("v")}}}},
		}
	}
	const n = 300
	before := leader.Store().AppliedIndex()
	results := make([]*storepb.TxnResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("/grp/%03d", i)
			if i%100 == 7 {
				k = "/grp/taken"
			}
			results[i], errs[i] = b.Txn(ctxT(t), create(k))
		}()
	}
	wg.Wait()
	revs := map[int64]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("txn %d: %v", i, errs[i])
		}
		want := i%100 != 7
		if results[i].GetSucceeded() != want {
			t.Errorf("txn %d: succeeded=%v, want %v", i, results[i].GetSucceeded(), want)
		}
		if want {
			if revs[results[i].GetRevision()] {
				t.Errorf("txn %d: revision %d reported twice", i, results[i].GetRevision())
			}
			revs[results[i].GetRevision()] = true
		}
	}
	entries := leader.Store().AppliedIndex() - before
	t.Logf("%d concurrent txns took %d log entries", n, entries)
	if entries >= n {
		t.Errorf("%d txns took %d entries: nothing was grouped", n, entries)
	}
	if got := get(t, f.Store(), "/grp/299"); got != "v" {
		t.Fatalf("follower reads %q after its write, want v", got)
	}
	// A call whose context is already over is not written.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Txn(ctx, create("/grp/cancelled")); !errors.Is(err, consensus.ErrIndeterminate) {
		t.Errorf("cancelled call: %v, want ErrIndeterminate", err)
	}
	if kv, _, err := f.Store().Get(ctxT(t), []byte("/grp/cancelled")); err != nil || kv != nil {
		t.Errorf("a call cancelled before it was sent was written (%v, %v)", kv, err)
	}
	if _, err := b.Txn(ctxT(t), &storepb.TxnRequest{Success: []*storepb.RequestOp{{}}}); !errors.Is(err, consensus.ErrInvalid) {
		t.Errorf("malformed txn: %v, want ErrInvalid", err)
	}
}
