package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// Everything an agent keeps is under its --data-dir: two agents on one
// machine (two data dirs) share no directory, so neither lists, adopts or
// sweeps the other's pod network namespaces or CNI state. (The netns dir
// used to be /run/skiff/netns whatever --data-dir said, and a restarted
// agent removed the other's pod networks as leftovers.)
func TestAgentKeepsEverythingUnderItsDataDir(t *testing.T) {
	dirs := map[string][]string{}
	for _, d := range []string{"/srv/agent-a", "/srv/agent-b"} {
		f := agentFlags{dataDir: d, bridge: "skiff0"}
		n, r := agentNetworkConfig(f), agentRuntimeConfig(f)
		for name, p := range map[string]string{"netns": n.NetnsDir, "cni cache": n.CacheDir, "cni ipam": n.IPAMDataDir, "pod state": r.StateDir} {
			if !strings.HasPrefix(p, d+"/") {
				t.Errorf("agent with --data-dir %s keeps its %s in %s", d, name, p)
			}
			dirs[d] = append(dirs[d], filepath.Clean(p))
		}
	}
	for _, a := range dirs["/srv/agent-a"] {
		for _, b := range dirs["/srv/agent-b"] {
			if a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/") {
				t.Errorf("two agents share %s / %s", a, b)
			}
		}
	}
}
