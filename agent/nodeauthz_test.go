package agent_test

import (
	"context"
	"sync"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/proto/client"
)

// startWithNodeAuthorizer starts an API cluster whose servers decide as
// control nodes do — the node authorizer, each server with its own graph
// of pods over its own store — and returns it with a client holding
// node:<nodeName>'s certificate, for the agent.
func startWithNodeAuthorizer(t *testing.T, nodes int, nodeName string) (*apitest.Cluster, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cp := apitest.Start(t, nodes, func(cfg *api.Config) {
		g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil {
				t.Errorf("node graph: %v", err)
			}
		}()
		cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(g))
	})
	tc, err := cp.ClientTLS("node:" + nodeName)
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = cp.Addrs(), tc
	nc, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return cp, nc
}
