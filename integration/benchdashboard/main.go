package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/skiffhq/skiff/controlplane/dashboard/dashboardtest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func main() {
	changes := flag.Int("changes", 100, "pod status changes to time")
	pods := flag.Int("pods", 50, "pods on the page")
	dashboards := flag.Int("dashboards", 5, "idle dashboards open while measuring CPU")
	idle := flag.Duration("idle", 30*time.Second, "each idle CPU window")
	flag.Parse()
	if err := run(*changes, *pods, *dashboards, *idle); err != nil {
		log.Fatalf("dashboard-bench: %v", err)
	}
}

func run(changes, podCount, dashboards int, idle time.Duration) error {
	dir, err := os.MkdirTemp("", "benchdashboard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, err := dashboardtest.New(ctx, dashboardtest.Options{HollowNodes: -1, Loops: []string{}, BaseDir: filepath.Join(dir, "cluster")})
	if err != nil {
		return err
	}
	defer e.Close()
	admin := e.Cluster.Admin()
	names := make([]string, podCount)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%03d", i)
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: names[i], Namespace: "default"},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
		if _, err := client.Create(ctx, admin, p); err != nil {
			return err
		}
	}

	tab, closeBrowser, err := e.Browser(ctx, filepath.Join(dir, "browser"))
	if err != nil {
		return err
	}
	defer closeBrowser()
	if err := openPods(ctx, e, tab, podCount); err != nil {
		return err
	}
	// Every row the page puts in place is stamped with the time it
	// appeared, by the reason it shows (bench-<n>).
	observe := `window.seen = {}; new MutationObserver(ms => { const t = performance.timeOrigin + performance.now();
		for (const m of ms) for (const n of m.addedNodes) { const x = /\(bench-(\d+)\)/.exec(n.textContent || "");
			if (x && !(x[1] in window.seen)) window.seen[x[1]] = t; } })
		.observe(document.getElementById("pods"), {childList: true, subtree: true}); true`
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](observe)); err != nil {
		return fmt.Errorf("install the observer: %w", err)
	}
	lat := make([]float64, 0, changes)
	for i := range changes {
		name := names[i%podCount]
		patch := fmt.Sprintf(`{"status":{"reason":"bench-%d"}}`, i)
		wrote := float64(time.Now().UnixNano()) / 1e6
		if _, err := admin.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Pod", Namespace: "default", Name: name, Patch: []byte(patch), Status: true}); err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		wctx, wcancel := context.WithTimeout(tab, 15*time.Second)
		seen, err := chromedp.Run(wctx, chromedp.Poll[float64](fmt.Sprintf(`window.seen["%d"] || 0`, i),
			chromedp.WithPollingInterval(2*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
		wcancel()
		if err != nil {
			return fmt.Errorf("change %d never reached the page: %w", i, err)
		}
		lat = append(lat, seen-wrote)
	}
	sort.Float64s(lat)
	p50, p99 := pct(lat, 0.50), pct(lat, 0.99)
	fmt.Printf("update latency over %d changes (%d pods on the page): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", len(lat), podCount, p50, p99, lat[len(lat)-1])

	// Idle cost: the same window with no dashboard open, then with N.
	closeBrowser()
	time.Sleep(2 * time.Second) // let the closed page's stream end before measuring
	base := cpuOver(idle)
	tab, closeBrowser, err = e.Browser(ctx, filepath.Join(dir, "browser-idle"))
	if err != nil {
		return err
	}
	defer closeBrowser()
	var tabs []context.Context
	for i := range dashboards {
		t := tab
		if i > 0 {
			var c context.CancelFunc
			t, c = chromedp.NewContext(tab)
			defer c()
		}
		if err := openPods(ctx, e, t, podCount); err != nil {
			return err
		}
		tabs = append(tabs, t)
	}
	time.Sleep(2 * time.Second) // the pages' first renders are not idle
	with := cpuOver(idle)
	for i, t := range tabs { // still connected at the end: the streams stayed open
		v, err := chromedp.Run(t, chromedp.Evaluate[string](`document.getElementById("live").textContent`))
		if err != nil || v != "live" {
			return fmt.Errorf("dashboard %d is not live after the idle window: %q %v", i, v, err)
		}
	}
	perDash := (with - base).Seconds() / idle.Seconds() * 100 / float64(dashboards)
	fmt.Printf("control-plane process CPU over %s: %.3f s with no dashboard, %.3f s with %d idle dashboards (%.4f%% of a core each)\n",
		idle, base.Seconds(), with.Seconds(), dashboards, perDash)
	fmt.Printf("dashboard-bench: update_p50_ms=%.0f update_p99_ms=%.0f idle_cpu_pct=%.2f\n", p50, p99, perDash)
	return nil
}

func openPods(ctx context.Context, e *dashboardtest.Env, tab context.Context, pods int) error {
	link, err := e.LoginURL(dashboardtest.Viewer)
	if err != nil {
		return err
	}
	if err := chromedp.Do(tab, chromedp.Navigate(link), chromedp.Navigate(e.URL+"/pods")); err != nil {
		return fmt.Errorf("open the pods page: %w", err)
	}
	wctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	cond := fmt.Sprintf(`document.body.dataset.live === "1" && document.querySelectorAll("#pods tr").length === %d`, pods)
	if err := dashboardtest.PollPage(wctx, cond); err != nil {
		return fmt.Errorf("pods page with %d rows, live: %w", pods, err)
	}
	return nil
}

// cpuOver is this process's CPU time (user + system) during d.
func cpuOver(d time.Duration) time.Duration {
	before := cpuTime()
	time.Sleep(d)
	return cpuTime() - before
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
