package agent_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/proto/client"
)

// certGroups gives the test CA's certificates, which carry only a common
// name, the group that name implies (as certificates from the cluster CA
// carry it: node:<name> is in skiff:nodes, admin in skiff:admins) and
// defers to the control nodes' own authorizer.
type certGroups struct{ z node.Authorizer }

func (g certGroups) attrs(a api.Attributes) api.Attributes {
	switch {
	case strings.HasPrefix(a.Identity.User, "node:"):
		a.Identity.Groups = []string{pki.GroupNodes}
	case a.Identity.User == pki.AdminUser:
		a.Identity.Groups = []string{pki.GroupAdmins}
	}
	return a
}

func (g certGroups) Authorize(ctx context.Context, a api.Attributes) error {
	return g.z.Authorize(ctx, g.attrs(a))
}

func (g certGroups) NeedsStored(a api.Attributes) bool { return g.z.NeedsStored(g.attrs(a)) }

func (g certGroups) AuthorizeObject(ctx context.Context, a api.Attributes, obj proto.Message) error {
	return g.z.AuthorizeObject(ctx, g.attrs(a), obj)
}

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
		cfg.Authorizer = certGroups{node.NewAuthorizer(g)}
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
