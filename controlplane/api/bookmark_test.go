package api_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// listCounter is the API's authorizer, counting the List calls of a kind.
type listCounter struct {
	api.AllowAll
	kind  string
	lists atomic.Int64
}

func (l *listCounter) Authorize(ctx context.Context, a api.Attributes) error {
	if a.Verb == "list" && a.Kind == l.kind {
		l.lists.Add(1)
	}
	return nil
}

// TestIdleInformerResumesAfterLeaderChangeWithoutRelist: an informer of
// ConfigMaps lists once, then nothing of its kind changes while 100,500
// unrelated keys are written — more than the store's history of 100,000
// events, so the revision of its List is no longer resumable (checked).
// The watch's bookmarks keep its resume point current: when the leader it
// watches through is stopped, it resumes on another node from there, and
// sees the next ConfigMap, with no List call after the first.
func TestIdleInformerResumesAfterLeaderChangeWithoutRelist(t *testing.T) {
	counter := &listCounter{kind: "ConfigMap"}
	c := apitest.Start(t, 3, func(cfg *api.Config) { cfg.Authorizer = counter })
	ctx := ctxT(t, 5*time.Minute)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	servers := []string{leader.Addr} // the informer watches through the leader
	for _, a := range c.Addrs() {
		if a != leader.Addr {
			servers = append(servers, a)
		}
	}
	cl := c.MustClient(t, servers...)
	mustCreate(t, cl, ns("bm"))
	mustCreate(t, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "bm", Name: "before"}})

	inf := client.NewInformer(cl, "ConfigMap", client.ListOptions{Namespace: "bm"}, client.EventHandler{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- inf.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	listedAt := inf.ResourceVersion()

	const unrelated, perBatch = 100_500, 1000
	var last int64
	for n := 0; n < unrelated; n += perBatch {
		txns := make([]*storepb.TxnRequest, min(perBatch, unrelated-n))
		for i := range txns {
			txns[i] = &storepb.TxnRequest{Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{
				Key: []byte(fmt.Sprintf("/unrelated/%06d", n+i)), Value: []byte("x")}}}}}
		}
		// Unconditional puts: a batch whose outcome a leader change left
		// unknown is simply written again.
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("unrelated writes %d-%d", n, n+len(txns)), func() bool {
			res, err := leader.Node.Store().Batch(ctx, txns)
			if err != nil {
				t.Logf("unrelated writes at %d: %v (again)", n, err)
				return false
			}
			last = res[len(res)-1].GetTxn().GetRevision()
			return true
		})
	}
	// Without bookmarks a resume from the List's revision is refused now
	// (asked of the leader: it has applied every write it acknowledged).
	wctx, cancelWatch := context.WithTimeout(ctx, 5*time.Second)
	defer cancelWatch()
	stream, err := c.MustClient(t, leader.Addr).API().Watch(wctx, &apiv1.WatchRequest{Kind: "ConfigMap", Namespace: "bm", ResourceVersion: listedAt})
	if err == nil {
		_, err = stream.Recv()
	}
	if !client.IsTooOld(err) {
		t.Fatalf("watch from the List's revision %s after %d writes: want OutOfRange (history rolled over), got %v", listedAt, unrelated, err)
	}
	testutil.WaitFor(t, 30*time.Second, "a bookmark brings the informer's revision past the unrelated writes", func() bool {
		rv, _ := strconv.ParseInt(inf.ResourceVersion(), 10, 64)
		return rv >= last
	})

	// Stop the node the informer watches through, the leader (unless an
	// election moved it meanwhile): its stream breaks and it resumes on
	// another node.
	c.StopNode(leader)
	// The client may have sent it on the stopped node's dying connection
	// (outcome unknown): send it again until it is there.
	testutil.WaitFor(t, 60*time.Second, "ConfigMap after created", func() bool {
		_, err := client.Create(ctx, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "bm", Name: "after"}})
		return err == nil || client.IsAlreadyExists(err)
	})
	testutil.WaitFor(t, 60*time.Second, "the informer sees a ConfigMap created after the leader change", func() bool {
		return inf.Has("bm", "after")
	})
	if n := counter.lists.Load(); n != 1 || inf.Relists() != 0 {
		t.Fatalf("ConfigMap List calls: %d (informer re-lists %d), want the first only", n, inf.Relists())
	}
}
