package node

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// controlServers is a worker's view of the control nodes' API addresses,
// so that adding or removing control nodes needs no edit on the worker:
// the current ones (Version's api_servers, read from the store; or, when
// no API answers, the control nodes alive in gossip) first, then the ones
// node.json lists and the client learned. A change of the current set is
// saved in node.json and node.conf, so a restart reaches the control
// nodes of now, not only those of the join.
type controlServers struct {
	dataDir string
	log     *slog.Logger
	members interface{ ControlNodes() []ControlMember }

	mu      sync.Mutex
	st      State
	current []string
	client  *client.Client
}

func newControlServers(dataDir string, st State, members interface{ ControlNodes() []ControlMember }, log *slog.Logger) *controlServers {
	return &controlServers{dataDir: dataDir, st: st, members: members, log: log}
}

func (s *controlServers) setClient(c *client.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.client = c
}

// list is every address worth trying, the current ones first.
func (s *controlServers) list() []string {
	s.mu.Lock()
	out := slices.Clone(s.current)
	out = append(out, s.st.Servers...)
	cl := s.client
	s.mu.Unlock()
	if cl != nil {
		out = append(out, cl.Servers()...)
	}
	for _, m := range s.members.ControlNodes() {
		if m.APIAddress != "" {
			out = append(out, m.APIAddress)
		}
	}
	return dedupe(out)
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, x := range in {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// refresh asks the API for the current control nodes (gossip's view when
// none answers) and saves a changed set.
func (s *controlServers) refresh(ctx context.Context) {
	s.mu.Lock()
	cl := s.client
	s.mu.Unlock()
	var current []string
	if cl != nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cl.API().Version(rctx, &apiv1.VersionRequest{})
		cancel()
		if err == nil {
			current = resp.GetApiServers()
		} else {
			s.log.Debug("asking for the current control nodes", "err", err)
		}
	}
	if len(current) == 0 {
		for _, m := range s.members.ControlNodes() {
			if m.APIAddress != "" {
				current = append(current, m.APIAddress)
			}
		}
	}
	if len(current) == 0 {
		return
	}
	current = dedupe(current)
	slices.Sort(current)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = current
	saved := slices.Clone(s.st.Servers)
	slices.Sort(saved)
	if slices.Equal(saved, current) {
		return
	}
	next := s.st
	next.Servers = current
	if err := saveState(s.dataDir, next); err != nil {
		s.log.Error("saving the current control nodes in "+StateFile, "err", err)
		return
	}
	if err := writeNodeConfig(s.dataDir, current); err != nil {
		s.log.Error("saving the current control nodes in "+NodeConfigFile, "err", err)
	}
	s.log.Info("control nodes changed: saved", "was", s.st.Servers, "now", current)
	s.st = next
}

// run refreshes every interval until ctx ends.
func (s *controlServers) run(ctx context.Context, every time.Duration) {
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
