package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func main() {
	creates := flag.Int("creates", 3000, "pods created in each create-latency phase")
	concurrency := flag.Int("concurrency", 32, "concurrent creators")
	watchers := flag.Int("watchers", 1000, "watchers in the fan-out phase")
	pods := flag.Int("pods", 10000, "pods created in the fan-out phase")
	flag.Parse()
	if err := run(*creates, *concurrency, *watchers, *pods); err != nil {
		fmt.Fprintln(os.Stderr, "benchapi:", err)
		os.Exit(1)
	}
}

type phase struct {
	name    string
	n       int
	elapsed time.Duration
	lat     []time.Duration
	errors  int
}

func (p phase) perSecond() float64 { return float64(p.n) / p.elapsed.Seconds() }

func pct(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func run(creates, concurrency, watchers, pods int) error {
	dir, err := os.MkdirTemp("", "benchapi-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Production timeouts (consensus.DefaultConfig), not the test harness's
	// tighter ones: under this much load on 2 cores the latter flap.
	prod := consensus.DefaultConfig()
	c, err := apitest.NewCluster(apitest.Options{Nodes: 3, BaseDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tune: func(cfg *consensus.Config) {
			cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = prod.HeartbeatTimeout, prod.ElectionTimeout, prod.LeaderLeaseTimeout
			cfg.CommitTimeout, cfg.ApplyTimeout = prod.CommitTimeout, prod.ApplyTimeout
		},
		// Every watcher here is the one admin identity: what is measured is
		// fan-out, not the per-identity caps (api.Limits), so lift them.
		TuneAPI: func(cfg *api.Config) { cfg.Limits.WatchesPerIdentity, cfg.Limits.StreamsPerIdentity = -1, -1 }})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = c.WaitReady(rctx)
	cancel()
	if err != nil {
		return err
	}
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		return err
	}
	follower, err := c.Follower(10 * time.Second)
	if err != nil {
		return err
	}
	all, err := c.Client()
	if err != nil {
		return err
	}
	defer all.Close()
	for _, ns := range []string{"via-leader", "via-follower", "fanout"} {
		if _, err := client.Create(ctx, all, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "cluster up: leader %s, follower %s\n", leader.Node.ID, follower.Node.ID)

	var phases []phase
	for _, target := range []struct {
		name, ns string
		srv      *apitest.Server
	}{{"create via leader", "via-leader", leader}, {"create via follower", "via-follower", follower}} {
		cl, err := c.Client(target.srv.Addr)
		if err != nil {
			return err
		}
		p, err := createPods(ctx, cl, target.ns, "p", creates, concurrency, nil)
		cl.Close()
		if err != nil {
			return err
		}
		p.name = target.name
		phases = append(phases, p)
		fmt.Fprintf(os.Stderr, "%s: %.0f/s p99 %s ms\n", p.name, p.perSecond(), ms(pct(p.lat, 0.99)))
	}

	fan, deliveries, expected, err := fanOut(ctx, c, all, watchers, pods, concurrency)
	if err != nil {
		return err
	}
	phases = append(phases, fan)

	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tops\tops/s\tp50 ms\tp99 ms\tmax ms\terrors\t")
	for _, p := range phases {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t\n", p.name, p.n, p.perSecond(), ms(pct(p.lat, 0.5)), ms(pct(p.lat, 0.99)), ms(pct(p.lat, 1)), p.errors)
	}
	fmt.Fprintf(tw, "watch delivery (%d watchers)\t%d\t\t%s\t%s\t%s\t%d missing\t\n", watchers, len(deliveries),
		ms(pct(deliveries, 0.5)), ms(pct(deliveries, 0.99)), ms(pct(deliveries, 1)), expected-len(deliveries))
	tw.Flush()
	fmt.Printf("api-bench: creates_per_s=%.0f create_p99_ms=%s watchers=%d delivery_p99_ms=%s\n",
		phases[0].perSecond(), ms(pct(phases[0].lat, 0.99)), watchers, ms(pct(deliveries, 0.99)))
	return nil
}

func benchPod(ns, name string) *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "bench"}},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
}

// createPods creates n pods with conc workers; sent, when set, records
// each create's start time by the revision it got.
func createPods(ctx context.Context, cl *client.Client, ns, prefix string, n, conc int, sent func(rev int64, at time.Time)) (phase, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				t0 := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				p, err := client.Create(cctx, cl, benchPod(ns, fmt.Sprintf("%s-%06d", prefix, i)))
				cancel()
				if err != nil {
					if errs.Add(1) <= 3 {
						fmt.Fprintf(os.Stderr, "create %s-%06d: %v\n", prefix, i, err)
					}
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
				if sent != nil {
					sent(client.Revision(p.GetMetadata().GetResourceVersion()), t0)
				}
			}
		}()
	}
	wg.Wait()
	p := phase{n: n, elapsed: time.Since(start), errors: int(errs.Load())}
	for _, l := range lats {
		p.lat = append(p.lat, l...)
	}
	if p.errors > n/20 {
		return p, fmt.Errorf("%d of %d creates failed", p.errors, n)
	}
	return p, nil
}

type arrival struct {
	rev int64
	at  time.Time
}

// fanOut starts watchers (spread over every API server), creates pods and
// measures, per delivered event, the time since its create call started.
func fanOut(ctx context.Context, c *apitest.Cluster, all *client.Client, watchers, pods, conc int) (phase, []time.Duration, int, error) {
	var clients []*client.Client
	for _, addr := range c.Addrs() {
		cl, err := c.Client(addr)
		if err != nil {
			return phase{}, nil, 0, err
		}
		defer cl.Close()
		clients = append(clients, cl)
	}
	list, err := all.API().List(ctx, &apiv1.ListRequest{Kind: "Pod", Namespace: "fanout"})
	if err != nil {
		return phase{}, nil, 0, err
	}
	rv := list.GetMetadata().GetResourceVersion()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	arrivals := make([][]arrival, watchers)
	var wg sync.WaitGroup
	var ready, done sync.WaitGroup
	var failures atomic.Int64
	for w := 0; w < watchers; w++ {
		ready.Add(1)
		done.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			readyOnce := sync.OnceFunc(ready.Done)
			doneOnce := sync.OnceFunc(done.Done)
			defer readyOnce()
			defer doneOnce()
			stream, err := clients[w%len(clients)].API().Watch(wctx, &apiv1.WatchRequest{Kind: "Pod", Namespace: "fanout", ResourceVersion: rv})
			if err != nil {
				failures.Add(1)
				return
			}
			readyOnce()
			buf := make([]arrival, 0, pods)
			for len(buf) < pods {
				resp, err := stream.Recv()
				if err != nil {
					break
				}
				now := time.Now()
				for _, ev := range resp.GetEvents() {
					buf = append(buf, arrival{client.Revision(ev.GetResourceVersion()), now})
				}
			}
			arrivals[w] = buf
		}()
	}
	ready.Wait()
	if f := failures.Load(); f > 0 {
		return phase{}, nil, 0, fmt.Errorf("%d watchers failed to start", f)
	}
	fmt.Fprintf(os.Stderr, "%d watchers up; creating %d pods\n", watchers, pods)
	var mu sync.Mutex
	sentAt := make(map[int64]time.Time, pods)
	p, err := createPods(ctx, all, "fanout", "f", pods, conc, func(rev int64, at time.Time) {
		mu.Lock()
		sentAt[rev] = at
		mu.Unlock()
	})
	if err != nil {
		return p, nil, 0, err
	}
	p.name = "create under fan-out"
	// Wait (bounded) for the watchers to drain.
	waitDone := make(chan struct{})
	go func() { done.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(5 * time.Minute):
		fmt.Fprintln(os.Stderr, "some watchers did not receive every event within 5 minutes")
	}
	stop()
	wg.Wait()
	var deliveries []time.Duration
	for _, as := range arrivals {
		for _, a := range as {
			if t, ok := sentAt[a.rev]; ok {
				deliveries = append(deliveries, a.at.Sub(t))
			}
		}
	}
	return p, deliveries, watchers * len(sentAt), nil
}
