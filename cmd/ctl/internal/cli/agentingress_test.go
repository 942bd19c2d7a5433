package cli

import (
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/skiffhq/skiff/integration/testutil"
)

// A default ingress port another program holds leaves the ingress off
// with a warning naming the flag, instead of stopping the agent.
func TestIngressDefaultPortInUseIsSkipped(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port

	var f agentFlags
	fl := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	addIngressFlags(fl, &f)
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	f.ingressHTTP, f.ingressHTTPS = busy, 0 // as if the default were busy
	var logs testutil.SyncBuffer
	proxy, err := withIngress(f, nil, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil || proxy != nil {
		t.Fatalf("withIngress with its default port busy: %v, %v; want no ingress and no error", proxy, err)
	}
	if !strings.Contains(logs.String(), "--ingress-http") {
		t.Fatalf("log %q does not name --ingress-http", logs.String())
	}
}
