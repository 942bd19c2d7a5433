package bootstrap_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestControlNodesListedAndLearned: with three control nodes made by ctl
// init and ctl join --control, every node's admin.conf comes to list all
// three API addresses (its own first), and a client given only the first
// node learns the other two from it. Then the first node dies: the same
// client carries on, and ctl with the first node's admin.conf and no
// --server works.
func TestControlNodesListedAndLearned(t *testing.T) {
	c, controlToken, _ := newCluster(t, "c1")
	c.joinControl(t, "c2", controlToken)
	c.joinControl(t, "c3", controlToken)
	c.waitMembers(t, 60*time.Second, voters("c1", "c2", "c3"))
	all := []string{c.nodes[0].api(), c.nodes[1].api(), c.nodes[2].api()}

	for _, n := range c.nodes {
		path := filepath.Join(n.dataDir, "admin.conf")
		var got []string
		ok := testutil.Eventually(40*time.Second, func() bool {
			cfg, err := client.LoadConfig(path)
			if err != nil {
				return false
			}
			got = cfg.Servers
			return len(got) == 3 && got[0] == n.api() && sameSet(got, all)
		})
		if !ok {
			t.Fatalf("%s's admin.conf lists servers %v; want all of %v, its own first", n.name, got, all)
		}
	}

	// A client that knows only c1 learns c2 and c3 from it.
	cfg, err := client.LoadConfig(c.admin)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Servers = []string{c.nodes[0].api()}
	cl, err := client.NewFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	list := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, err := client.List[*apiv1.Namespace](ctx, cl, client.ListOptions{})
		return err
	}
	if err := list(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the client to learn all control nodes", func() bool {
		return sameSet(cl.Servers(), all)
	})

	// Kill c1 (maybe the leader: an election may be under way, hence
	// eventually): the client reaches c2 or c3, which it only learned.
	c.nodes[0].p.kill()
	var lastErr error
	if !testutil.Eventually(45*time.Second, func() bool { lastErr = list(); return lastErr == nil }) {
		t.Fatalf("after c1 died, the client that learned c2 and c3 failed: %v", lastErr)
	}
	// ctl with c1's admin.conf and no --server fails over by itself.
	ok := testutil.Eventually(45*time.Second, func() bool {
		out, _, code := run(t, "--config", c.admin, "get", "namespaces")
		return code == 0 && strings.Contains(out, "kube-system")
	})
	if !ok {
		_, errs, _ := run(t, "--config", c.admin, "get", "namespaces")
		t.Fatalf("ctl with c1's admin.conf after c1 died: %s", errs)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
