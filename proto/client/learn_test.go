package client_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestClientLearnsControlNodes: against three API servers whose Version
// reports all three addresses, a client configured with only the first
// learns the other two after its first call, and keeps working when the
// first one is stopped.
func TestClientLearnsControlNodes(t *testing.T) {
	var addrs atomic.Pointer[[]string]
	c := apitest.Start(t, 3, func(cfg *api.Config) {
		cfg.APIServers = func(context.Context) ([]string, error) {
			if a := addrs.Load(); a != nil {
				return *a, nil
			}
			return nil, nil
		}
	})
	all := c.Addrs()
	addrs.Store(&all)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	tc, err := c.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = []string{all[0]}, tc
	cl, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.API().Version(ctx, &apiv1.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the client to learn all three servers", func() bool {
		got := cl.Servers()
		return len(got) == 3 && got[0] == all[0] && slices.Contains(got, all[1]) && slices.Contains(got, all[2])
	})

	c.StopNode(c.Servers()[0])
	var lastErr error
	ok := testutil.Eventually(30*time.Second, func() bool {
		_, _, lastErr = client.List[*apiv1.Namespace](ctx, cl, client.ListOptions{})
		return lastErr == nil
	})
	if !ok {
		t.Fatalf("with the first server stopped, the client that learned the others failed: %v", lastErr)
	}
}
