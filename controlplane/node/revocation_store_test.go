package node

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// TestRevocationsFollowTheStoreAndPrune: the deny list in force follows
// the replicated records through the watch, and the prune drops only the
// records no certificate can outlive.
func TestRevocationsFollowTheStoreAndPrune(t *testing.T) {
	c := consensustest.Start(t, 1, nil)
	s := c.MustLeader(t).Store()
	ca, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan struct{}, 16)
	r := &revocations{store: s, deny: &pki.DenyList{}, bundle: must(pki.NewBundle(ca)), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		changed: func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	rec, err := r.revoke(ctxT(t), "user:bob", "admin", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Expires.Equal(ca.Cert.NotAfter) {
		t.Errorf("expires %v, want the CA's expiry %v", rec.Expires, ca.Cert.NotAfter)
	}
	testutil.WaitFor(t, time.Second, "the watch to put bob's revocation in force", func() bool { return r.deny.Len() == 1 })

	// An expired record and a live one; the prune keeps the live ones.
	now := time.Now()
	old, _ := json.Marshal(pki.Revocation{Identity: "node:gone", RevokedAt: now.Add(-48 * time.Hour), Expires: now.Add(-time.Hour)})
	if _, err := s.Put(ctxT(t), &storepb.PutRequest{Key: []byte(revocationsPrefix + "node:gone"), Value: old}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Second, "the watch to see the expired record", func() bool { return r.deny.Len() == 2 })
	n, err := r.prune(ctxT(t), now)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d, %v; want 1 record dropped", n, err)
	}
	kvs, err := rangePrefix(ctxT(t), s, revocationsPrefix)
	if err != nil || len(kvs) != 1 || string(kvs[0].Key) != revocationsPrefix+"user:bob" {
		t.Fatalf("after prune: %v, %v; want only user:bob", kvs, err)
	}
	testutil.WaitFor(t, time.Second, "the watch to drop the pruned record", func() bool { return r.deny.Len() == 1 })
	if len(changes) == 0 {
		t.Error("no change callback ran: open connections would not be re-checked")
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
