package consensus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/skiffhq/skiff/integration/testutil"
)

// scriptedFollower answers the Raft RPCs that reach a real NetworkTransport
// (TCP on loopback) as a follower whose log ends at last: an append whose
// previous entry it lacks is refused with Success=false. reject decides
// which other appends it refuses, as a follower that lost the tail of its
// log does (it then also forgets that tail). It stands in for the follower
// in tests of the leader's pipeline; the leader side is the real thing.
type scriptedFollower struct {
	trans  *raft.NetworkTransport
	reject func(req *raft.AppendEntriesRequest) bool

	mu       sync.Mutex
	last     uint64
	rejected int
}

func startScriptedFollower(t *testing.T, reject func(*raft.AppendEntriesRequest) bool) *scriptedFollower {
	t.Helper()
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := &scriptedFollower{trans: trans, reject: reject}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-trans.Consumer():
				f.answer(rpc)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = trans.Close()
	})
	return f
}

func (f *scriptedFollower) answer(rpc raft.RPC) {
	req, ok := rpc.Command.(*raft.AppendEntriesRequest)
	if !ok {
		rpc.Respond(nil, errors.New("scripted follower: only AppendEntries"))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &raft.AppendEntriesResponse{Term: req.Term}
	switch {
	case len(req.Entries) > 0 && f.reject != nil && f.reject(req):
		// The tail from the previous entry on is gone.
		if req.PrevLogEntry > 0 && f.last >= req.PrevLogEntry {
			f.last = req.PrevLogEntry - 1
		}
		f.rejected++
	case req.PrevLogEntry > f.last:
		// A gap: what raft's follower answers too.
		f.rejected++
	default:
		if n := len(req.Entries); n > 0 {
			f.last = req.Entries[n-1].Index
		}
		resp.Success = true
	}
	resp.LastLog = f.last
	rpc.Respond(resp, nil)
}

func (f *scriptedFollower) state() (last uint64, rejected int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.rejected
}

func (f *scriptedFollower) addr() raft.ServerAddress { return f.trans.LocalAddr() }

// newLeaderTransport is a real TCP NetworkTransport with the default
// pipelining depth (2), the setting under which raft#612 hangs.
func newLeaderTransport(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trans.Close() })
	return trans
}

func appendReq(i uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ID: []byte("leader"), Addr: []byte("leader")},
		Term:         1,
		PrevLogEntry: i - 1,
		PrevLogTerm:  1,
		Entries:      []*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")}},
	}
}

// TestSafePipelineFailsSendsAfterRejection drives the pipeline as raft's
// pipelineReplicate does: one goroutine sends, another reads responses
// and stops at the first Success=false. The follower refuses the first
// append. With raft's own pipeline the third send blocks for ever (its
// decoder holds the second response for a reader that is gone); the
// wrapped one fails a send at once, so raft's send loop can stop.
func TestSafePipelineFailsSendsAfterRejection(t *testing.T) {
	f := startScriptedFollower(t, func(req *raft.AppendEntriesRequest) bool { return req.Entries[0].Index == 1 })
	leader := newLeaderTransport(t)
	pipe, err := safeTransport{leader}.AppendEntriesPipeline("follower", f.addr())
	if err != nil {
		t.Fatal(err)
	}

	decoded := make(chan *raft.AppendEntriesResponse, 1)
	go func() { // raft's pipelineDecode
		for fut := range pipe.Consumer() {
			if endsDecoder(fut) {
				decoded <- fut.Response()
				return
			}
		}
	}()
	sendErr := make(chan error, 1)
	go func() { // raft's send loop: it stops at the first failed send
		for i := uint64(1); i <= 20; i++ {
			if _, err := pipe.AppendEntries(appendReq(i), new(raft.AppendEntriesResponse)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case resp := <-decoded:
		if resp.Success {
			t.Fatalf("decoder stopped on a successful response %+v", resp)
		}
	case <-ctx.Done():
		t.Fatal("the refused append never reached the pipeline's consumer")
	}
	select {
	case err := <-sendErr:
		if err == nil {
			t.Fatal("20 sends went through a pipeline whose consumer had stopped")
		}
	case <-ctx.Done():
		t.Fatal("a pipelined send blocked after the consumer stopped at Success=false (hashicorp/raft#612)")
	}
	closed := make(chan struct{})
	go func() { _ = pipe.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("pipeline Close blocked")
	}
	if _, err := pipe.AppendEntries(appendReq(30), new(raft.AppendEntriesResponse)); err == nil {
		t.Fatal("a send on a closed pipeline succeeded")
	}
}

// countFSM is the state machine of TestPipelineRecoversFromRejectedAppends.
type countFSM struct{ n atomic.Uint64 }

func (m *countFSM) Apply(*raft.Log) any                 { return m.n.Add(1) }
func (m *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (m *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type countSnap struct{}

func (countSnap) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (countSnap) Release()                             {}

// TestPipelineRecoversFromRejectedAppends runs a real raft leader over the
// store's transport wrapper under a steady stream of writes, replicating to
// a follower that 12 times refuses an append mid-pipeline as if it had lost
// the tail of its log. Each time the leader must fall back to plain
// replication and bring the follower up to date again, and Shutdown must
// return. With raft's own pipeline (MaxRPCsInFlight 2) the leader's
// replication of that follower usually parks for good within a few rounds
// (its heartbeats keep going, so nothing notices) and Shutdown never
// returns: hashicorp/raft#612.
func TestPipelineRecoversFromRejectedAppends(t *testing.T) {
	var rejectNow atomic.Bool
	f := startScriptedFollower(t, func(*raft.AppendEntriesRequest) bool { return rejectNow.CompareAndSwap(true, false) })
	trans := newLeaderTransport(t)

	conf := raft.DefaultConfig()
	conf.LocalID = "leader"
	conf.HeartbeatTimeout = 100 * time.Millisecond
	conf.ElectionTimeout = 100 * time.Millisecond
	conf.LeaderLeaseTimeout = 100 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = hclog.NewNullLogger()
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(conf, &countFSM{}, store, store, raft.NewInmemSnapshotStore(), safeTransport{trans})
	if err != nil {
		t.Fatal(err)
	}
	shutdown := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Shutdown().Error() }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return errors.New("raft Shutdown did not return within 20 s (a replication goroutine is stuck)")
		}
	}
	var shutOnce sync.Once
	var shutErr error
	doShutdown := func() error { shutOnce.Do(func() { shutErr = shutdown() }); return shutErr }
	t.Cleanup(func() {
		if err := doShutdown(); err != nil {
			t.Error(err)
		}
	})

	// The follower is a non-voter: the leader commits alone, so writes go
	// on whatever happens to its replication.
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "leader", Address: trans.LocalAddr()},
		{Suffrage: raft.Nonvoter, ID: "follower", Address: f.addr()},
	}}).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the single voter to lead", func() bool { return r.State() == raft.Leader })

	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	var stopOnce sync.Once
	endLoad := func() { stopOnce.Do(func() { close(stopLoad) }); load.Wait() }
	for range 2 {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				_ = r.Apply([]byte("w"), time.Second).Error() // errors end with the shutdown
			}
		}()
	}
	defer endLoad()

	for round := 1; round <= 12; round++ {
		_, before := f.state()
		rejectNow.Store(true)
		testutil.WaitFor(t, 10*time.Second, "the follower to refuse an append", func() bool {
			_, n := f.state()
			return n > before
		})
		target := r.LastIndex()
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("the follower to catch up after refusing an append (round %d)", round), func() bool {
			last, _ := f.state()
			return last >= target
		})
	}
	endLoad()
	if err := doShutdown(); err != nil {
		t.Fatal(err)
	}
}

// Replication knobs out of range are refused naming the field and value.
func TestConfigRefusesBadReplicationKnobs(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxRPCsInFlight = -1 }, "MaxRPCsInFlight -1"},
		{func(c *Config) { c.MaxAppendEntries = 2048 }, "MaxAppendEntries 2048"},
		{func(c *Config) { c.MaxAppendEntries = -5 }, "MaxAppendEntries -5"},
	} {
		c := Config{ID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", MaxVoters: 5,
			ServerTLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}, ClientTLS: &tls.Config{},
			PeerIdentity: func(*x509.Certificate) (string, error) { return "", nil }}
		tc.set(&c)
		err := c.validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate() = %v, want ErrInvalid naming %q", err, tc.want)
		}
	}
	var d Config
	if d.maxRPCsInFlight() != DefaultMaxRPCsInFlight || d.maxAppendEntries() != DefaultMaxAppendEntries {
		t.Errorf("zero knobs: inflight %d, max append %d; want the defaults", d.maxRPCsInFlight(), d.maxAppendEntries())
	}
}
