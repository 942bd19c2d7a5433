package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// counter records the adds a handler saw, by key.
type counter struct {
	mu   sync.Mutex
	adds map[string]int
}

func (c *counter) handler() client.EventHandler {
	return client.EventHandler{OnAdd: func(o client.Object) {
		c.mu.Lock()
		c.adds[client.Key(o)]++
		c.mu.Unlock()
	}}
}

func (c *counter) saw(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.adds) != n {
		return false
	}
	for _, v := range c.adds {
		if v != 1 {
			return false
		}
	}
	return true
}

// Subscribers of a shared informer each see every object exactly once: a
// late one through a replay of the cache, then live events.
func TestSharedInformerReplaysAndFansOut(t *testing.T) {
	c := apitest.Start(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cl := c.MustClient(t)
	mk := func(i int) {
		t.Helper()
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default"},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := client.Create(ctx, cl, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		mk(i)
	}
	f := client.NewInformerFactory(cl)
	a := &counter{adds: map[string]int{}}
	infA, releaseA := f.Subscribe("Pod", client.ListOptions{}, a.handler())
	if err := infA.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "first subscriber sees 3 pods", func() bool { return a.saw(3) })
	b := &counter{adds: map[string]int{}}
	infB, releaseB := f.Subscribe("Pod", client.ListOptions{}, b.handler())
	if infB != infA {
		t.Fatal("second subscriber got another informer")
	}
	if !b.saw(3) {
		t.Fatalf("late subscriber was not replayed the cache: %v", b.adds)
	}
	mk(3)
	testutil.WaitFor(t, 10*time.Second, "both see the 4th pod once", func() bool { return a.saw(4) && b.saw(4) })
	releaseA()
	mk(4)
	testutil.WaitFor(t, 10*time.Second, "the remaining subscriber sees the 5th pod", func() bool { return b.saw(5) })
	if !a.saw(4) {
		t.Fatalf("released subscriber still gets events: %v", a.adds)
	}
	releaseB()
	d := &counter{adds: map[string]int{}}
	infD, releaseD := f.Subscribe("Pod", client.ListOptions{}, d.handler())
	defer releaseD()
	if infD == infA {
		t.Fatal("after the last release, a new subscriber must get a fresh informer")
	}
	testutil.WaitFor(t, 10*time.Second, "fresh informer lists 5 pods", func() bool { return d.saw(5) })
}
