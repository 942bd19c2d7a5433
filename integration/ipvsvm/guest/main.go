package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/proxytest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: guest test | bench N...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "test":
		err = test()
	case "bench":
		err = bench(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Println("RESULT guest FAIL:", err)
		os.Exit(1)
	}
}

func config(lab *proxytest.Lab, backend string) netproxy.Config {
	cfg := netproxy.DefaultConfig()
	cfg.NetNSPath = lab.NodeNSPath()
	cfg.Backend = backend
	cfg.ClusterCIDR = proxytest.ClusterCIDR
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

func result(name string, err error) bool {
	if err != nil {
		fmt.Printf("RESULT %s FAIL: %s\n", name, strings.ReplaceAll(err.Error(), "\n", " | "))
		return false
	}
	fmt.Printf("RESULT %s ok\n", name)
	return true
}

func test() error {
	lab, err := proxytest.NewLab(3)
	if err != nil {
		return err
	}
	defer lab.Close()
	if err := lab.StartServers(); err != nil {
		return err
	}
	// auto must find IPVS here, for real
	auto, err := netproxy.New(config(lab, netproxy.BackendAuto))
	if err == nil {
		if auto.BackendName() != netproxy.BackendIPVS {
			err = fmt.Errorf("auto chose %s in a kernel with IPVS", auto.BackendName())
		}
		auto.Close()
	}
	result("AutoChoosesIPVS", err)

	cfg := config(lab, netproxy.BackendIPVS)
	p, err := netproxy.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	if !result("FullSync", p.FullSync(ctx)) {
		return nil
	}
	result("Sysctls", checkSysctls(lab))
	env := &proxytest.Env{Lab: lab, Proxy: p, IPVS: true,
		Logf:     func(f string, a ...any) { fmt.Printf("  "+f+"\n", a...) },
		NewProxy: func() (*netproxy.Proxy, error) { return netproxy.New(cfg) }}
	for _, sc := range proxytest.Scenarios() {
		start := time.Now()
		err := sc.Run(ctx, env)
		fmt.Printf("  (%s took %s)\n", sc.Name, time.Since(start).Round(time.Millisecond))
		result(sc.Name, err)
	}
	err = p.FullSync(ctx)
	if err == nil && p.LastSync().Changed != 0 {
		err = fmt.Errorf("full resync without changes changed %d objects", p.LastSync().Changed)
	}
	result("ResyncIdempotent", err)
	if raw, err := proxytest.ReadIPVS(lab.Node); err == nil {
		fmt.Printf("  ipvs table has %d virtual services\n", len(raw))
	}
	return nil
}

// checkSysctls reads back the IPVS pitfall settings in the node namespace.
func checkSysctls(lab *proxytest.Lab) error {
	want := map[string]string{"conntrack": "1", "expire_nodest_conn": "1", "expire_quiescent_template": "1", "conn_reuse_mode": "1"}
	return proxytest.InNS(lab.Node, func() error {
		for k, v := range want {
			b, err := os.ReadFile("/proc/sys/net/ipv4/vs/" + k)
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(b)); got != v {
				return fmt.Errorf("net.ipv4.vs.%s=%s, want %s", k, got, v)
			}
		}
		return nil
	})
}

// bench times a full sync of n services × 10 endpoints, one endpoint
// change and a full resync with nothing to repair, then removes everything.
func bench(args []string) error {
	for _, a := range args {
		n, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("bench: %q: %w", a, err)
		}
		lab, err := proxytest.NewLab(1)
		if err != nil {
			return err
		}
		cfg := config(lab, netproxy.BackendIPVS)
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
		p, err := netproxy.New(cfg)
		if err != nil {
			lab.Close()
			return err
		}
		t, err := proxytest.TimeSyncs(p, n)
		p.Close()
		lab.Close()
		if err != nil {
			return err
		}
		fmt.Printf("BENCH backend=ipvs services=%d endpoints=%d full_sync_ms=%.1f change_ms=%.2f resync_ms=%.1f\n",
			n, n*10, ms(t.Full), ms(t.Change), ms(t.Resync))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
