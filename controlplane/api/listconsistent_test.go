package api_test

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// write is one acknowledged write of the test's writer.
type write struct {
	name, value string
	rev         int64
}

// TestListPagesAreOneSnapshot lists ConfigMaps page by page while a writer
// creates and rewrites them, sending each page to another of three control
// nodes. The pages must together be exactly the state at the revision the
// List reports: every object acknowledged by then with the value it had
// then, nothing written later. Then a continue token whose revision the
// store's history no longer reaches back to gets OutOfRange saying re-list.
func TestListPagesAreOneSnapshot(t *testing.T) {
	const history = 3000
	c, err := apitest.NewCluster(apitest.Options{Nodes: 3, BaseDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tune:   func(cfg *consensus.Config) { cfg.WatchHistory = history }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)
	writer := c.MustClient(t)
	mustCreate(t, writer, ns("snap"))
	var perServer []*client.Client
	for _, addr := range c.Addrs() {
		perServer = append(perServer, c.MustClient(t, addr))
	}

	var mu sync.Mutex
	var log []write
	record := func(cm *apiv1.ConfigMap) {
		mu.Lock()
		log = append(log, write{cm.GetMetadata().GetName(), cm.GetData()["v"], client.Revision(cm.GetMetadata().GetResourceVersion())})
		mu.Unlock()
	}
	for i := 0; i < 60; i++ {
		record(mustCreate(t, writer, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "snap", Name: fmt.Sprintf("cm-%03d", i)}, Data: map[string]string{"v": "0"}}))
	}

	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		// Rewrites existing objects (values change under the pages) and
		// creates new ones (which sort among them), until told to stop.
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			var cm *apiv1.ConfigMap
			var err error
			if i%3 == 0 {
				cm, err = client.Create(ctx, writer, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "snap", Name: fmt.Sprintf("cm-%03d-new", i%60)}, Data: map[string]string{"v": "0"}})
				if client.IsAlreadyExists(err) {
					continue
				}
			} else {
				name := fmt.Sprintf("cm-%03d", (i*7)%60)
				var cur *apiv1.ConfigMap
				if cur, err = client.Get[*apiv1.ConfigMap](ctx, writer, "snap", name); err == nil {
					cur.Data = map[string]string{"v": fmt.Sprint(i)}
					cm, err = client.Update(ctx, writer, cur)
					if client.IsConflict(err) {
						continue
					}
				}
			}
			if err != nil {
				writerDone <- fmt.Errorf("writer: %w", err)
				return
			}
			record(cm)
		}
	}()

	// Let the writer get going, then list in pages of 7, each page from the
	// next node.
	waitWrites := func(n int) {
		for deadline := time.Now().Add(30 * time.Second); ; {
			mu.Lock()
			have := len(log)
			mu.Unlock()
			if have >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("writer made %d writes, want %d", have, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitWrites(80)
	req := &apiv1.ListRequest{Kind: "ConfigMap", Namespace: "snap", Limit: 7}
	got := map[string]*apiv1.ConfigMap{}
	var listRev int64
	for page := 0; ; page++ {
		list, err := perServer[page%len(perServer)].API().List(ctx, req)
		if err != nil {
			t.Fatalf("page %d from %s: %v", page, c.Addrs()[page%len(perServer)], err)
		}
		if page == 0 {
			listRev = client.Revision(list.GetMetadata().GetResourceVersion())
		}
		for _, env := range list.GetItems() {
			obj, err := client.Unpack(env)
			if err != nil {
				t.Fatal(err)
			}
			cm := obj.(*apiv1.ConfigMap)
			if _, dup := got[cm.GetMetadata().GetName()]; dup {
				t.Fatalf("page %d repeats %s", page, cm.GetMetadata().GetName())
			}
			got[cm.GetMetadata().GetName()] = cm
		}
		if list.GetMetadata().GetContinue() == "" {
			break
		}
		req.Continue = list.GetMetadata().GetContinue()
		// Writes land between the pages.
		mu.Lock()
		have := len(log)
		mu.Unlock()
		waitWrites(have + 3)
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}

	// The state at listRev from the acknowledged writes.
	want := map[string]write{}
	mu.Lock()
	for _, w := range log {
		if w.rev <= listRev && w.rev >= want[w.name].rev {
			want[w.name] = w
		}
	}
	later := len(log)
	for _, w := range log {
		if w.rev <= listRev {
			later--
		}
	}
	mu.Unlock()
	if later == 0 {
		t.Fatal("no write landed after the first page: the test proves nothing")
	}
	for name, w := range want {
		cm, ok := got[name]
		if !ok {
			t.Errorf("%s (written at %d) missing from the List at revision %d", name, w.rev, listRev)
			continue
		}
		if v := cm.GetData()["v"]; v != w.value || client.Revision(cm.GetMetadata().GetResourceVersion()) != w.rev {
			t.Errorf("%s: List at %d shows v=%s (rv %s), the state then was v=%s (rv %d)", name, listRev, v, cm.GetMetadata().GetResourceVersion(), w.value, w.rev)
		}
	}
	for name, cm := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s (rv %s) is in the List at revision %d but was written after it", name, cm.GetMetadata().GetResourceVersion(), listRev)
		}
	}
	t.Logf("List at revision %d: %d objects over pages from 3 nodes; %d writes landed during it", listRev, len(got), later)

	// A token older than the history kept: OutOfRange, "re-list".
	first, err := perServer[0].API().List(ctx, &apiv1.ListRequest{Kind: "ConfigMap", Namespace: "snap", Limit: 5})
	if err != nil || first.GetMetadata().GetContinue() == "" {
		t.Fatalf("first page: %v (continue %q)", err, first.GetMetadata().GetContinue())
	}
	var filler []*apiv1.ConfigMap
	for i := 0; i < history+100; i++ {
		filler = append(filler, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("fill-%d", i)}})
	}
	for len(filler) > 0 {
		n := min(len(filler), 500)
		if _, errs, err := client.CreateMany(ctx, writer, filler[:n]); err != nil || firstErr(errs) != nil {
			t.Fatalf("filler: %v %v", err, firstErr(errs))
		}
		filler = filler[n:]
	}
	for _, cl := range perServer {
		_, err := cl.API().List(ctx, &apiv1.ListRequest{Kind: "ConfigMap", Namespace: "snap", Limit: 5, Continue: first.GetMetadata().GetContinue()})
		if !client.IsTooOld(err) || !strings.Contains(err.Error(), "re-list") {
			t.Fatalf("continue after the history moved on: %v, want OutOfRange saying re-list", err)
		}
	}
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
