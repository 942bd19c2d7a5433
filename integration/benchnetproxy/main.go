package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/integration/ipvsvm"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/proxytest"
)

func main() {
	sizes := flag.String("services", "1000,10000", "service counts to time syncs for")
	dur := flag.Duration("load", 2*time.Second, "length of one load round")
	workers := flag.Int("workers", 4, "concurrent load generator connections")
	skipIPVS := flag.Bool("skip-ipvs", false, "do not boot the IPVS guest")
	skipLoad := flag.Bool("skip-load", false, "only time syncs, no ClusterIP vs direct load")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile of the nftables sync timing to this file")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "benchnetproxy needs root (network namespaces, nftables)")
		os.Exit(1)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchnetproxy:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "benchnetproxy:", err)
			os.Exit(1)
		}
		defer f.Close()
	}
	err := run(*sizes, *dur, *workers, *skipIPVS, *skipLoad, *cpuProfile != "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchnetproxy:", err)
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func run(sizes string, dur time.Duration, workers int, skipIPVS, skipLoad, profiling bool) error {
	fmt.Println("## sync time, services × 10 endpoints")
	fmt.Printf("%-9s %9s %10s %14s %11s %11s\n", "backend", "services", "endpoints", "full_sync_ms", "change_ms", "resync_ms")
	var last struct {
		n            int
		full, change time.Duration
	}
	for _, s := range strings.Split(sizes, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil {
			return fmt.Errorf("-services: %q: %w", s, err)
		}
		t, err := nftSync(n)
		if err != nil {
			return err
		}
		fmt.Printf("%-9s %9d %10d %14.1f %11.2f %11.1f\n", "nftables", n, n*10, ms(t.Full), ms(t.Change), ms(t.Resync))
		last.n, last.full, last.change = n, t.Full, t.Change
	}
	if profiling {
		pprof.StopCPUProfile()
	}
	if !skipIPVS {
		lines, err := ipvsSync(sizes)
		if err != nil {
			fmt.Printf("ipvs      (guest failed: %v)\n", err)
		}
		for _, l := range lines {
			fmt.Println(l)
		}
	}

	if skipLoad {
		return nil
	}
	fmt.Println()
	fmt.Printf("## through a ClusterIP vs direct (nftables, %d workers, %s rounds, median of %d)\n", workers, dur, loadRounds)
	ratio, err := throughput(dur, workers)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("netproxy-bench: backend=nftables services=%d full_sync_ms=%.0f change_ms=%.1f via_service_ratio=%.3f\n",
		last.n, ms(last.full), ms(last.change), ratio)
	return nil
}

func quietConfig(lab *proxytest.Lab) netproxy.Config {
	cfg := netproxy.DefaultConfig()
	cfg.NetNSPath = lab.NodeNSPath()
	cfg.Backend = netproxy.BackendNFTables
	cfg.ClusterCIDR = proxytest.ClusterCIDR
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

func nftSync(n int) (proxytest.SyncTimes, error) {
	lab, err := proxytest.NewLab(1)
	if err != nil {
		return proxytest.SyncTimes{}, err
	}
	defer lab.Close()
	p, err := netproxy.New(quietConfig(lab))
	if err != nil {
		return proxytest.SyncTimes{}, err
	}
	defer p.Close()
	return proxytest.TimeSyncs(p, n)
}

// ipvsSync boots the guest once for all sizes and returns its table rows.
func ipvsSync(sizes string) ([]string, error) {
	if _, _, err := ipvsvm.Kernel(); errors.Is(err, ipvsvm.ErrUnavailable) {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "benchnetproxy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	a, err := ipvsvm.Build(ctx, dir, "github.com/skiffhq/skiff/integration/ipvsvm/guest")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	console, err := ipvsvm.Boot(ctx, a, append([]string{"bench"}, strings.Split(sizes, ",")...), 15*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, console)
	}
	re := regexp.MustCompile(`BENCH backend=ipvs services=(\d+) endpoints=(\d+) full_sync_ms=([\d.]+) change_ms=([\d.]+) resync_ms=([\d.]+)`)
	var rows []string
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		rows = append(rows, fmt.Sprintf("%-9s %9s %10s %14s %11s %11s   (qemu TCG guest, software-emulated CPU)", "ipvs", m[1], m[2], m[3], m[4], m[5]))
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("guest printed no BENCH lines:\n%s", console)
	}
	rows = append(rows, fmt.Sprintf("(guest boot + runs took %s)", time.Since(start).Round(time.Second)))
	return rows, nil
}

// loadRounds: alternating direct/ClusterIP rounds; the ratio is the median
// over the pairs.
const loadRounds = 5

type loadResult struct {
	connsPerSec float64
	p99         time.Duration
	echoPerSec  float64
}

// throughput compares a ClusterIP with one endpoint against dialing that
// endpoint directly, alternating rounds so both see the same machine noise.
func throughput(dur time.Duration, workers int) (float64, error) {
	lab, err := proxytest.NewLab(1)
	if err != nil {
		return 0, err
	}
	defer lab.Close()
	if err := lab.StartServers(); err != nil {
		return 0, err
	}
	p, err := netproxy.New(quietConfig(lab))
	if err != nil {
		return 0, err
	}
	defer p.Close()
	// 1,000 other services in the table, so lookups are not trivially small
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("other%d", i)
		if err := p.SetService(proxytest.ServiceFor(name, fmt.Sprintf("10.97.%d.%d", i/256, i%256), netproxy.TCP, 80, 0, 0)); err != nil {
			return 0, err
		}
		if err := p.SetEndpoints(proxytest.EndpointsFor(name, lab.Backends...)); err != nil {
			return 0, err
		}
	}
	if err := p.SetService(proxytest.ServiceFor("load", "10.96.0.100", netproxy.TCP, 80, 0, 0)); err != nil {
		return 0, err
	}
	if err := p.SetEndpoints(proxytest.EndpointsFor("load", lab.Backends[0])); err != nil {
		return 0, err
	}
	if err := p.FullSync(context.Background()); err != nil {
		return 0, err
	}
	direct := fmt.Sprintf("%s:%d", lab.Backends[0].IP, proxytest.BackendPort)
	service := "10.96.0.100:80"
	var d, s []loadResult
	for round := 0; round < loadRounds; round++ {
		r, err := load(lab, direct, dur, workers)
		if err != nil {
			return 0, fmt.Errorf("direct: %w", err)
		}
		d = append(d, r)
		r, err = load(lab, service, dur, workers)
		if err != nil {
			return 0, fmt.Errorf("service: %w", err)
		}
		s = append(s, r)
	}
	md, msv := median(d), median(s)
	fmt.Printf("%-10s %12s %10s %12s\n", "target", "conns/s", "p99_ms", "echo_rt/s")
	fmt.Printf("%-10s %12.0f %10.3f %12.0f\n", "direct", md.connsPerSec, ms(md.p99), md.echoPerSec)
	fmt.Printf("%-10s %12.0f %10.3f %12.0f\n", "clusterIP", msv.connsPerSec, ms(msv.p99), msv.echoPerSec)
	// Ratios per pair of adjacent rounds, then their median: both rounds
	// of a pair saw nearly the same load from the rest of the machine.
	pairRatio := func(f func(loadResult) float64) float64 {
		var r []float64
		for i := range d {
			r = append(r, f(s[i])/f(d[i]))
		}
		slices.Sort(r)
		return r[len(r)/2]
	}
	connRatio := pairRatio(func(r loadResult) float64 { return r.connsPerSec })
	echoRatio := pairRatio(func(r loadResult) float64 { return r.echoPerSec })
	fmt.Printf("ratio service/direct (median of per-round-pair ratios): conns/s %.3f, echo round trips/s %.3f, p99 %.2fx\n",
		connRatio, echoRatio, float64(msv.p99)/float64(md.p99))
	return connRatio, nil
}

func median(rs []loadResult) loadResult {
	pick := func(f func(loadResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return loadResult{
		connsPerSec: pick(func(r loadResult) float64 { return r.connsPerSec }),
		p99:         time.Duration(pick(func(r loadResult) float64 { return float64(r.p99) })),
		echoPerSec:  pick(func(r loadResult) float64 { return r.echoPerSec }),
	}
}

// load runs workers in the client namespace: half the time each opens a
// connection per request (connect, read greeting, reset — what DNAT costs
// is per connection), then the other half does echo round trips on one
// long-lived connection (per-packet cost of the NATed flow).
func load(lab *proxytest.Lab, addr string, dur time.Duration, workers int) (loadResult, error) {
	var mu sync.Mutex
	var lat []time.Duration
	conns, echoes := 0, 0
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := proxytest.InNS(lab.Client, func() error {
				var local []time.Duration
				end := time.Now().Add(dur / 2)
				buf := make([]byte, 64)
				for time.Now().Before(end) {
					t0 := time.Now()
					c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
					if err != nil {
						return err
					}
					_ = c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := io.ReadAtLeast(c, buf, 1); err != nil {
						c.Close()
						return err
					}
					local = append(local, time.Since(t0))
					_ = c.(*net.TCPConn).SetLinger(0) // RST: no TIME_WAIT pile-up
					c.Close()
				}
				c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := io.ReadAtLeast(c, buf, 4); err != nil {
					return err
				}
				n := 0
				end = time.Now().Add(dur / 2)
				_ = c.SetDeadline(end.Add(2 * time.Second))
				msg := []byte("ping-pong-payload\n")
				for time.Now().Before(end) {
					if _, err := c.Write(msg); err != nil {
						return err
					}
					if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
						return err
					}
					n++
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				mu.Lock()
				lat = append(lat, local...)
				conns += len(local)
				echoes += n
				mu.Unlock()
				return nil
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return loadResult{}, firstErr
	}
	slices.Sort(lat)
	half := (dur / 2).Seconds()
	return loadResult{connsPerSec: float64(conns) / half, p99: lat[len(lat)*99/100], echoPerSec: float64(echoes) / half}, nil
}
