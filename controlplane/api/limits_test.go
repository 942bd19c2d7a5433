package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// rawAPI dials the cluster's first server as user with plain gRPC (no
// failover client) and the given dial options.
func rawAPI(t *testing.T, c *apitest.Cluster, user string, opts ...grpc.DialOption) apiv1.APIClient {
	t.Helper()
	tc, err := c.ClientTLS(user)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.Addrs()[0], append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return apiv1.NewAPIClient(conn)
}

// watchReady opens a ConfigMap watch and waits for its ready header, or
// returns the refusal.
func watchReady(ctx context.Context, a apiv1.APIClient) (apiv1.API_WatchClient, error) {
	st, err := a.Watch(ctx, &apiv1.WatchRequest{Kind: "ConfigMap", Namespace: "default"})
	if err != nil {
		return nil, err
	}
	if md, err := st.Header(); err == nil && len(md.Get(api.WatchReadyHeader)) > 0 {
		return st, nil
	}
	_, err = st.Recv()
	return nil, err
}

// An identity at its cap of concurrent calls is refused every call, unary
// ones too, with ResourceExhausted naming the limit; another identity is
// served; the count goes down as its calls end.
func TestStreamsPerIdentityCap(t *testing.T) {
	c := apitest.Start(t, 1, func(cfg *api.Config) { cfg.Limits = api.Limits{StreamsPerIdentity: 2, WatchesPerIdentity: 10} })
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	greedy, admin := rawAPI(t, c, "greedy"), rawAPI(t, c, "admin")
	wctx, stop := context.WithCancel(ctx)
	for i := 0; i < 2; i++ {
		if _, err := watchReady(wctx, greedy); err != nil {
			t.Fatalf("watch %d: %v", i+1, err)
		}
	}
	if got, calls := c.Servers()[0].API.Held("greedy"); got != 2 || calls != 2 {
		t.Fatalf("server counts %d watches, %d calls for greedy; want 2, 2", got, calls)
	}
	_, err := greedy.Get(ctx, &apiv1.GetRequest{Kind: "Namespace", Name: "default"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "the limit per identity is 2") ||
		!strings.Contains(err.Error(), "--max-streams-per-identity") {
		t.Fatalf("a third call: %v, want ResourceExhausted naming the limit", err)
	}
	if _, err := admin.Get(ctx, &apiv1.GetRequest{Kind: "Namespace", Name: "default"}); err != nil {
		t.Fatalf("admin while greedy is at its cap: %v", err)
	}
	stop()
	testutil.WaitFor(t, 10*time.Second, "greedy's watches to be released", func() bool {
		w, calls := c.Servers()[0].API.Held("greedy")
		return w == 0 && calls == 0
	})
	if _, err := greedy.Get(ctx, &apiv1.GetRequest{Kind: "Namespace", Name: "default"}); err != nil {
		t.Fatalf("greedy after closing its watches: %v", err)
	}
}

// A watcher that stops reading cannot make the server hold events for it
// without bound: what it holds is gRPC's flow-control window, the
// store watcher's channel (WatchBuffer batches) and one batch in Send;
// the events themselves live in the store's shared, bounded history, and a
// watcher that falls behind it is cut off (OutOfRange: re-list) instead
// of being kept a private backlog.
func TestSlowWatcherIsCutOffNotBuffered(t *testing.T) {
	c, err := apitest.NewCluster(apitest.Options{Nodes: 1, BaseDir: t.TempDir(), Tune: func(cfg *consensus.Config) {
		cfg.WatchHistory = 50
		cfg.WatchBuffer = 2
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	// Fixed 64 KiB windows (no BDP growth): the client's transport takes
	// no more than that while the application does not read.
	slow := rawAPI(t, c, "slow", grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	st, err := watchReady(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	writer := c.MustClient(t)
	const total = 400
	payload := strings.Repeat("x", 8<<10)
	for i := 0; i < total; i += 50 {
		var cms []*apiv1.ConfigMap
		for j := i; j < i+50; j++ {
			cms = append(cms, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", j), Namespace: "default"},
				Data: map[string]string{"payload": payload}})
		}
		if _, errs, err := client.CreateMany(ctx, writer, cms); err != nil || errs[0] != nil {
			t.Fatalf("create: %v %v", err, errs)
		}
	}
	// Now read: some events, then the cut-off, well before all 400.
	got := 0
	for {
		resp, err := st.Recv()
		if err != nil {
			if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "re-list") {
				t.Fatalf("after %d events: %v, want OutOfRange (too old, re-list)", got, err)
			}
			break
		}
		got += len(resp.GetEvents())
	}
	if got >= total {
		t.Fatalf("the slow watcher received all %d events: the server buffered them for it", got)
	}
	t.Logf("slow watcher received %d of %d events, then was cut off", got, total)
}
