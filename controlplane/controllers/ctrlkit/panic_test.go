package ctrlkit_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// panicky builds a Base loop over ConfigMaps that panics in the place
// named: its sync, a task of its own, or an informer handler.
func panicky(e *ctrltest.Env, where string) *ctrlkit.Base {
	cfg := ctrlkit.DefaultConfig(e.Client)
	var b *ctrlkit.Base
	b = ctrlkit.NewBase("panicky-"+where, cfg, func(context.Context, string) error {
		if where == "sync" {
			panic("bad object")
		}
		return nil
	})
	h := b.EnqueueHandler()
	if where == "handler" {
		h.OnAdd = func(client.Object) { panic("bad event") }
	}
	b.Watch("ConfigMap", h)
	if where == "task" {
		b.Go("sweep", func(context.Context) error { panic("bad sweep") })
	}
	return b
}

// A panic in any goroutine of a Base loop — a worker's sync, a task, an
// informer handler — ends Run with ErrPanic instead of killing the process.
func TestPanicEndsRunWithErrPanic(t *testing.T) {
	e := ctrltest.Start(t)
	cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default"}}
	if _, err := client.Create(e.Ctx(10*time.Second), e.Client, cm); err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{"sync", "task", "handler"} {
		t.Run(where, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- panicky(e, where).Run(e.Ctx(20 * time.Second)) }()
			select {
			case err := <-done:
				if !errors.Is(err, ctrlkit.ErrPanic) {
					t.Fatalf("Run returned %v, want ErrPanic", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not end after the panic")
			}
		})
	}
}

type fakeLeadership struct {
	ch        chan bool
	transfers atomic.Int64
}

func (f *fakeLeadership) LeaderCh() <-chan bool { return f.ch }
func (f *fakeLeadership) TransferLeadership() error {
	f.transfers.Add(1)
	return nil
}

// The leader's failure policy sees a worker's panic: the loop is restarted
// with backoff and, panicking every time, makes the node give leadership up.
func TestWorkerPanicMakesTheLeaderStepDown(t *testing.T) {
	e := ctrltest.Start(t)
	cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default"}}
	if _, err := client.Create(e.Ctx(10*time.Second), e.Client, cm); err != nil {
		t.Fatal(err)
	}
	lead := &fakeLeadership{ch: make(chan bool, 1)}
	cfg := controlplane.DefaultLeaderConfig()
	cfg.MaxFailures, cfg.Backoff, cfg.MaxBackoff = 3, 10*time.Millisecond, 50*time.Millisecond
	ll := controlplane.NewLeaderLoops(cfg, lead, panicky(e, "sync"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ll.Run(ctx) }()
	lead.ch <- true
	testutil.WaitFor(t, 20*time.Second, "step-down after 3 panics in a worker", func() bool { return lead.transfers.Load() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
