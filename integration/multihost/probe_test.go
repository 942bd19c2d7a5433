package multihost_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/agent/gossip"
)

// The gossip probe is this test binary re-run inside a lab host (the
// test's own process is in the machine's network namespace, which must not
// dial lab addresses): a memberlist member that tries to join the cluster.
const (
	envProbe     = "SKIFF_MULTIHOST_PROBE"      // the member's name
	envProbeKey  = "SKIFF_MULTIHOST_PROBE_KEY"  // a key file, or "random"
	envProbeBind = "SKIFF_MULTIHOST_PROBE_BIND" // its IP
	envProbeSeed = "SKIFF_MULTIHOST_PROBE_SEED" // host:port of a member
	envProbeWant = "SKIFF_MULTIHOST_PROBE_WANT" // alive members it must see
)

// runProbe joins the seed and prints "joined", "members N" (alive members
// it saw within 10 s, itself included) and "known name=state …", or
// "refused: <error>" when the join failed; it then leaves.
func runProbe(out io.Writer) int {
	var key []byte
	if f := os.Getenv(envProbeKey); f == "random" {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			fmt.Fprintln(out, "probe:", err)
			return 2
		}
	} else {
		k, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(out, "probe:", err)
			return 2
		}
		key = k
	}
	want, _ := strconv.Atoi(os.Getenv(envProbeWant))
	name := os.Getenv(envProbe)
	g, err := gossip.Start(gossip.Config{Name: name, BindAddr: os.Getenv(envProbeBind), BindPort: gossip.DefaultPort, Key: key,
		Meta:   gossip.Meta{Role: gossip.RoleWorker, Node: name, IP: os.Getenv(envProbeBind)},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(out, "probe:", err)
		return 2
	}
	defer g.Shutdown()
	if _, err := g.Join(os.Getenv(envProbeSeed)); err != nil {
		fmt.Fprintf(out, "refused: %v\n", err)
		return 0
	}
	fmt.Fprintln(out, "joined")
	alive := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		alive = 0
		for _, m := range g.Members() {
			if m.State == gossip.StateAlive {
				alive++
			}
		}
		if alive >= want {
			break
		}
	}
	fmt.Fprintf(out, "members %d\n", alive)
	// Every member it heard of, in any state: one that was ever let in stays
	// listed (dead or left) for a while after it is gone.
	var names []string
	for _, m := range g.Members() {
		names = append(names, m.Name+"="+m.State.String())
	}
	fmt.Fprintf(out, "known %s\n", strings.Join(names, " "))
	_ = g.Leave(2 * time.Second)
	return 0
}
