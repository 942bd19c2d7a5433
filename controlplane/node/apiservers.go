package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/skiffhq/skiff/proto/client"
)

// apiServers is this control node's view of the control nodes' API
// addresses, refreshed by the registration loop (no store reads on the
// request path): Version reports it, so that every client learns where to
// fail over, and the node's admin.conf lists it, so that losing the first
// control node needs no --server.
type apiServers struct {
	mu    sync.Mutex
	addrs []string
}

func (a *apiServers) get() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.addrs)
}

// set stores addrs and reports whether they differ from the last ones.
func (a *apiServers) set(addrs []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Equal(a.addrs, addrs) {
		return false
	}
	a.addrs = slices.Clone(addrs)
	return true
}

// refreshAPIServers reads the current control nodes' API addresses and, if
// they changed, rewrites the servers of this node's admin.conf: this node
// first (the nearest), then the others. The rest of the file (credentials,
// namespace) is kept.
func (c *Control) refreshAPIServers(ctx context.Context) error {
	addrs, err := apiAddresses(ctx, c.Store)
	if err != nil {
		return err
	}
	self := c.state.APIAddress()
	servers := []string{self}
	for _, a := range addrs {
		if a != self {
			servers = append(servers, a)
		}
	}
	if !c.apiServers.set(servers) {
		return nil
	}
	return updateAdminServers(filepath.Join(c.cfg.DataDir, AdminConfigFile), servers)
}

// updateAdminServers replaces the servers of the client config at path.
func updateAdminServers(path string, servers []string) error {
	cc, err := client.LoadConfig(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // removed by the operator: nothing to keep current
	}
	if err != nil {
		return err
	}
	if slices.Equal(cc.Servers, servers) {
		return nil
	}
	cc.Servers = servers
	return cc.Save(path)
}
