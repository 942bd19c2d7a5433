package ipvsvm

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestIPVSInQEMU boots Debian's kernel (it has IPVS; the host's has not)
// and runs every netproxy scenario against the IPVS backend inside it, in
// one boot. Each scenario reads the kernel's IPVS table back.
func TestIPVSInQEMU(t *testing.T) {
	if _, _, err := Kernel(); errors.Is(err, ErrUnavailable) {
		t.Skipf("cannot boot an IPVS kernel: %v", err)
	}
	ctx := context.Background()
	start := time.Now()
	a, err := Build(ctx, t.TempDir(), "github.com/skiffhq/skiff/integration/ipvsvm/guest")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built vmlinux + initramfs in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	console, err := Boot(ctx, a, []string{"test"}, 150*time.Second)
	t.Logf("guest ran %s; console:\n%s", time.Since(start).Round(time.Millisecond), console)
	if err != nil {
		t.Fatal(err)
	}
	console = strings.ReplaceAll(console, "\r", "")
	results := map[string]string{}
	re := regexp.MustCompile(`(?m)^RESULT (\S+) (ok|FAIL: .*)$`)
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		results[m[1]] = strings.TrimSpace(m[2])
	}
	if r, ok := results["guest"]; ok {
		t.Fatalf("guest failed: %s", r)
	}
	want := []string{"AutoChoosesIPVS", "FullSync", "Sysctls", "RoundRobin", "UDP", "NodePort", "Hairpin",
		"SessionAffinity", "EndpointRemovedGraceful", "NoEndpointsRefused", "RestartKeepsTraffic", "IncrementalChange", "NetworkPolicyViaClusterIP", "ResyncIdempotent"}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			r, ok := results[name]
			if !ok {
				t.Fatalf("guest printed no result for %s", name)
			}
			if r != "ok" {
				t.Fatal(r)
			}
		})
	}
	if strings.Contains(console, "insmod") && strings.Contains(console, "FAILED") {
		t.Errorf("a module failed to load (see console)")
	}
}
