package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func TestEveryNodeRestartedStateIntact(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	for i := 0; i < 50; i++ {
		put(t, l.Store(), fmt.Sprintf("/r/%02d", i), fmt.Sprint(i))
	}
	rev := l.Store().Revision()
	for _, n := range c.Nodes {
		n.Stop()
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	l = c.MustLeader(t)
	for _, n := range c.Running() {
		resp, err := n.Store().Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/r/"), Prefix: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 50 || resp.Revision < rev {
			t.Fatalf("%s after restart: %d keys at revision %d, want 50 at >= %d", n.ID, len(resp.Kvs), resp.Revision, rev)
		}
	}
	put(t, l.Store(), "/after", "x")
}

func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	c := consensustest.Start(t, 3, func(cfg *consensus.Config) {
		cfg.SnapshotThreshold = 16
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 8
	})
	l := c.MustLeader(t)
	lag := followers(c, l)[0]
	lag.Stop()
	for i := 0; i < 200; i++ {
		put(t, l.Store(), fmt.Sprintf("/s/%03d", i), strings.Repeat("x", 100))
	}
	// Wait until the leader has compacted its log past what the follower has.
	testutil.WaitFor(t, 10*time.Second, "leader snapshot", func() bool {
		snaps, _ := filepath.Glob(filepath.Join(l.Dir, "snapshots", "*", "meta.json"))
		return len(snaps) > 0
	})
	if err := lag.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "lagging follower catches up", func() bool {
		resp, err := lag.Store().Range(context.Background(), &storepb.RangeRequest{Key: []byte("/s/"), Prefix: true, CountOnly: true, Stale: true})
		return err == nil && resp.Count == 200
	})
	snaps, _ := filepath.Glob(filepath.Join(lag.Dir, "snapshots", "*", "meta.json"))
	if len(snaps) == 0 {
		t.Fatal("follower caught up without a snapshot on disk: log retention did not force an install")
	}
}

func voterCount(t *testing.T, s *consensus.Store) (voters, nonvoters int) {
	ms, err := s.Members(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Suffrage == storepb.Member_VOTER {
			voters++
		} else {
			nonvoters++
		}
	}
	return
}

func TestOddQuorumMembership(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	// A 4th control node joins as a non-voter: 4 voters would need 3 for a
	// quorum and tolerate no more failures than 3.
	if _, err := c.AddNode(); err != nil {
		t.Fatal(err)
	}
	l := c.MustLeader(t)
	testutil.WaitFor(t, 10*time.Second, "3 voters + 1 non-voter", func() bool {
		v, nv := voterCount(t, l.Store())
		return v == 3 && nv == 1
	})
	// Held that way: over two reconcile rounds (one a second) it is not promoted.
	if testutil.Eventually(2500*time.Millisecond, func() bool { v, _ := voterCount(t, l.Store()); return v != 3 }) {
		t.Fatal("4th node was promoted: voters became even")
	}
	// A 5th makes five voters.
	if _, err := c.AddNode(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitVoters(5, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	// Members lists every node with its state from any node.
	f := followers(c, c.MustLeader(t))[0]
	ms, err := f.Store().Members(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range ms {
		if m.Leader {
			leaders++
		}
		if !m.Healthy || m.AppliedIndex == 0 || m.Address == "" {
			t.Errorf("member %s: %+v", m.Id, m)
		}
	}
	if len(ms) != 5 || leaders != 1 {
		t.Fatalf("members: %v", ms)
	}
	// Removing a voter leaves 4: one voter is demoted to keep the count odd.
	l = c.MustLeader(t)
	// Asked through another follower: a member asking for its own removal
	// loses the answer when the store port cuts its connections.
	fs := followers(c, l)
	victim, asker := fs[0], fs[1]
	if err := asker.Store().RemoveMember(ctxT(t), victim.ID); err != nil && !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatal(err)
	}
	victim.Stop()
	testutil.WaitFor(t, 10*time.Second, "3 voters + 1 non-voter after removal", func() bool {
		l, err := c.WaitLeader(time.Second)
		if err != nil {
			return false
		}
		v, nv := voterCount(t, l.Store())
		return v == 3 && nv == 1
	})
	// Remove another voter: the healthy non-voter is promoted back to 3.
	l = c.MustLeader(t)
	var voter *consensustest.Node
	ms, _ = l.Store().Members(ctxT(t))
	for _, m := range ms {
		if m.Suffrage == storepb.Member_VOTER && !m.Leader {
			for _, n := range c.Running() {
				if n.ID == m.Id {
					voter = n
				}
			}
		}
	}
	if err := l.Store().RemoveMember(ctxT(t), voter.ID); err != nil {
		t.Fatal(err)
	}
	voter.Stop()
	testutil.WaitFor(t, 10*time.Second, "non-voter promoted: 3 voters, 0 non-voters", func() bool {
		l, err := c.WaitLeader(time.Second)
		if err != nil {
			return false
		}
		v, nv := voterCount(t, l.Store())
		return v == 3 && nv == 0
	})
	put(t, c.MustLeader(t).Store(), "/still", "writable")
}

func TestRecoverFromQuorumLoss(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	for i := 0; i < 30; i++ {
		put(t, l.Store(), fmt.Sprintf("/q/%02d", i), "acked")
	}
	// Two of three die for good.
	fs := followers(c, l)
	survivor := fs[0]
	for _, n := range c.Nodes {
		if n != survivor {
			n.Stop()
		}
	}
	survivor.Stop()
	if err := consensus.RecoverCluster(survivor.Config()); err != nil {
		t.Fatal(err)
	}
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "survivor leads alone", func() bool {
		s := survivor.Store()
		return s.IsLeader() && s.Linearize(context.Background()) == nil
	})
	resp, err := survivor.Store().Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/q/"), Prefix: true, CountOnly: true})
	if err != nil || resp.Count != 30 {
		t.Fatalf("after recovery: %v keys, err %v; want all 30 acknowledged writes", resp.GetCount(), err)
	}
	put(t, survivor.Store(), "/after-recovery", "ok")
	// The others rejoin it with fresh data.
	for _, n := range c.Nodes {
		if n == survivor {
			continue
		}
		if err := n.Wipe(); err != nil {
			t.Fatal(err)
		}
		n.PrepareRejoin(survivor.Store().MemberIDs())
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := survivor.Store().AddMember(ctxT(t), n.ID, n.Addr, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitVoters(3, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Running() {
		if got := get(t, n.Store(), "/after-recovery"); got != "ok" {
			t.Fatalf("%s: %q", n.ID, got)
		}
	}
	if err := consensus.RecoverCluster(consensus.Config{ID: "x", DataDir: t.TempDir(), BindAddr: "127.0.0.1:1", ServerTLS: survivor.Config().ServerTLS, ClientTLS: survivor.Config().ClientTLS, PeerIdentity: consensustest.CommonNameIdentity, MaxVoters: 5}); !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("recover from an empty dir: want ErrInvalid, got %v", err)
	}
}

func TestWatchAcrossNodesFromRevision(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	first := put(t, l.Store(), "/w/a", "1")
	put(t, l.Store(), "/w/b", "2")
	f := followers(c, l)[0]
	w, err := f.Store().Watch(ctxT(t), []byte("/w/"), true, first.Revision)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	put(t, c.Running()[2].Store(), "/w/c", "3")
	var keys []string
	testutil.WaitFor(t, 5*time.Second, "3 events on the follower", func() bool {
		select {
		case b := <-w.C:
			for _, e := range b.Events {
				keys = append(keys, string(e.Kv.Key))
			}
		default:
		}
		return len(keys) >= 3
	})
	if strings.Join(keys, ",") != "/w/a,/w/b,/w/c" {
		t.Fatalf("events %v", keys)
	}
}

// dialKV dials a node's KV service as a tool holding member n1's
// certificate would (the port serves current members only).
func dialKV(t *testing.T, c *consensustest.Cluster, addr string) storepb.KVClient {
	return dialKVAs(t, c, addr, c.Nodes[0].ID)
}

func dialKVAs(t *testing.T, c *consensustest.Cluster, addr, name string) storepb.KVClient {
	_, cli, err := c.PKI.TLSConfigs(name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cli)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				_, err = nc.Write([]byte{'G'})
			}
			return nc, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return storepb.NewKVClient(conn)
}

func TestBadRequestsGetClearErrorsOverGRPC(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	kv := dialKV(t, c, followers(c, l)[0].Addr)
	ctx := ctxT(t)
	for name, call := range map[string]func() error{
		"empty key": func() error { _, err := kv.Put(ctx, &storepb.PutRequest{}); return err },
		"huge value": func() error {
			_, err := kv.Put(ctx, &storepb.PutRequest{Key: []byte("k"), Value: make([]byte, consensus.MaxValueBytes+1)})
			return err
		},
		"negative rev": func() error {
			v := int64(-4)
			_, err := kv.Delete(ctx, &storepb.DeleteRequest{Key: []byte("k"), IfModRevision: &v})
			return err
		},
		"empty txn op": func() error {
			_, err := kv.Txn(ctx, &storepb.TxnRequest{Success: []*storepb.RequestOp{{}}})
			return err
		},
		"bad limit": func() error {
			_, err := kv.Range(ctx, &storepb.RangeRequest{Key: []byte("k"), Prefix: true, Limit: -1})
			return err
		},
	} {
		err := call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "invalid request:") {
			t.Errorf("%s: want InvalidArgument naming the problem, got %v", name, err)
		}
	}
	// Conflicts and compaction have their own codes.
	if _, err := kv.Put(ctx, &storepb.PutRequest{Key: []byte("/c"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	_, err := kv.Put(ctx, &storepb.PutRequest{Key: []byte("/c"), Value: []byte("2"), IfModRevision: &zero})
	if status.Code(err) != codes.Aborted || !errors.Is(consensus.FromStatus(err), consensus.ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	// Every node is still up and serving.
	for _, n := range c.Running() {
		put(t, n.Store(), "/alive/"+n.ID, "yes")
	}
}
