package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
)

func main() {
	ctl := flag.String("ctl", "bin/ctl", "the ctl binary (make build)")
	manifest := flag.String("app", "integration/demo/hello.yaml", "the demo app")
	flag.Parse()
	keep := os.Getenv("DEMO_KEEP") == "1"
	os.Exit(run(*ctl, *manifest, keep))
}

func say(format string, args ...any) {
	fmt.Printf("\n\033[1m== %s\033[0m\n", fmt.Sprintf(format, args...))
}

// demo is one run: the lab, the cluster on it, and the clean-up that must
// happen exactly once, whether the demo ends, fails or is interrupted.
type demo struct {
	lab     *hostlab.Lab
	c       *hostlab.Cluster
	ctlPath string
	once    sync.Once
	left    []string
}

func run(ctlPath, manifest string, keep bool) int {
	if err := hostlab.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "make demo:", err)
		return 1
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	ctlPath, manifest = abs(ctlPath), abs(manifest)
	d := &demo{ctlPath: ctlPath}
	lab, err := hostlab.New(hostlab.Options{Logf: func(format string, args ...any) {
		fmt.Println(strings.ReplaceAll(fmt.Sprintf(format, args...), ctlPath, "ctl"))
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "make demo:", err)
		return 1
	}
	d.lab = lab
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	interrupted := make(chan struct{})
	go func() {
		<-ctx.Done()
		if errors.Is(ctx.Err(), context.Canceled) {
			close(interrupted)
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- d.steps(ctx, manifest, keep) }()
	code := 0
	select {
	case err := <-errc:
		if err != nil {
			fmt.Fprintln(os.Stderr, "\nmake demo failed:", err)
			d.dumpLogs()
			code = 1
		}
	case <-interrupted:
		fmt.Fprintln(os.Stderr, "\ninterrupted")
		code = 130
	}
	stop() // a second Ctrl-C must not cut the clean-up short: it is ignored from here
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	if !d.cleanup() && code == 0 {
		code = 1
	}
	return code
}

func (d *demo) steps(ctx context.Context, manifest string, keep bool) error {
	say("building the demo registry (an OCI registry serving a busybox image built on the spot)")
	registryBin, err := hostlab.BuildRegistry(ctx, d.lab.Dir)
	if err != nil {
		return err
	}
	say("the lab: an admin machine holding the lab bridge, then one machine per node")
	registry, err := d.lab.StartRegistry(registryBin)
	if err != nil {
		return err
	}
	say("3 control nodes (c1: ctl init, c2 and c3: ctl join --control), 2 workers (ctl join, one process each)")
	d.c, err = hostlab.NewCluster(d.lab, d.ctlPath, registry, 3, 2)
	if err != nil {
		return err
	}
	c := d.c
	if err := waitFor(ctx, 60*time.Second, "3 voters", func() bool {
		out, err := c.Ctl("members")
		return err == nil && strings.Count(out, " voter ") == 3
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, 60*time.Second, "2 Ready workers", func() bool { return nodesReady(c, "w1", "w2") }); err != nil {
		return err
	}
	if err := d.show("members"); err != nil {
		return err
	}
	if err := d.show("get", "nodes", "-o", "wide"); err != nil {
		return err
	}

	say("admin$ ctl apply -f integration/demo/hello.yaml")
	if out, err := c.Ctl("apply", "-f", manifest); err != nil {
		return err
	} else {
		fmt.Print(out)
	}
	var pods []hostlab.Pod
	if err := waitFor(ctx, 180*time.Second, "4 ready hello pods on both workers", func() bool {
		pods, err = c.Pods("demo", "app=hello")
		on := hostlab.ReadyOn(pods)
		return err == nil && len(pods) == 4 && on["w1"]+on["w2"] == 4 && on["w1"] > 0 && on["w2"] > 0
	}); err != nil {
		return err
	}
	if err := d.show("get", "pods", "-n", "demo", "-o", "wide"); err != nil {
		return err
	}
	if err := d.show("get", "services", "-n", "demo"); err != nil {
		return err
	}
	svc, err := c.Service("demo", "hello")
	if err != nil || len(svc.Spec.Ports) == 0 {
		return fmt.Errorf("service hello: %v", err)
	}
	if err := waitFor(ctx, 30*time.Second, "4 endpoints of hello", func() bool {
		out, err := c.Ctl("get", "endpoints", "hello", "-n", "demo", "-o", "yaml")
		return err == nil && strings.Count(out, "ip: 10.244.") == 4
	}); err != nil {
		return err
	}

	say("pod to pod across workers: the receiver sees the sender pod's own IP (no NAT)")
	byNode := map[string]hostlab.Pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
	}
	for _, pair := range [][2]string{{"w1", "w2"}, {"w2", "w1"}} {
		from, to := byNode[pair[0]], byNode[pair[1]]
		url := "http://" + to.Status.PodIP + ":8080/cgi-bin/ip"
		got, err := c.Curl(c.Host(pair[0]), hostlab.PodNetns(hostlab.WorkerDataDir, from), url)
		if err != nil {
			return err
		}
		got = strings.TrimPrefix(strings.Trim(got, "[]"), "::ffff:")
		fmt.Printf("%s (%s, on %s) -> %s: the pod on %s saw the request come from %s\n", from.Metadata.Name, from.Status.PodIP, pair[0], url, pair[1], got)
		if got != from.Status.PodIP {
			return fmt.Errorf("pod-to-pod was NATed: %s saw %s, want %s", to.Metadata.Name, got, from.Status.PodIP)
		}
	}

	say("the ClusterIP %s from each worker machine (4 requests each)", svc.Spec.ClusterIP)
	for _, w := range c.Workers {
		if err := d.requests(w, "http://"+svc.Spec.ClusterIP+"/", 4); err != nil {
			return err
		}
	}
	nodePort := svc.Spec.Ports[0].NodePort
	say("the NodePort %d on each node that runs the Service proxy (the workers; control nodes run no agent), from the admin machine", nodePort)
	for _, w := range c.Workers {
		if err := d.requests(d.lab.Admin, fmt.Sprintf("http://%s:%d/", w.IP, nodePort), 4); err != nil {
			return err
		}
	}

	say("w2$ kill -9 of ctl join: gossip confirms the death, the leader marks w2 NotReady and its pods run on w1")
	c.Node["w2"].Kill()
	killed := time.Now()
	var ready hostlab.Condition
	if err := waitFor(ctx, 30*time.Second, "w2 NotReady", func() bool {
		ns, err := c.Nodes()
		ready = ns["w2"].Ready()
		return err == nil && ready.Status != "True"
	}); err != nil {
		return err
	}
	fmt.Printf("w2 Ready=%s after %.1f s: %s\n", ready.Status, time.Since(killed).Seconds(), ready.Message)
	if err := waitFor(ctx, 60*time.Second, "4 ready hello pods on w1", func() bool {
		pods, err = c.Pods("demo", "app=hello")
		return err == nil && len(pods) == 4 && hostlab.ReadyOn(pods)["w1"] == 4
	}); err != nil {
		return err
	}
	fmt.Printf("all 4 hello pods ready on w1 %.1f s after the kill\n", time.Since(killed).Seconds())
	say("w2$ the same ctl join command again: it resumes the node (no new join)")
	if err := c.Node["w2"].Restart(); err != nil {
		return err
	}
	if m, err := c.Node["w2"].WaitLog(reResumed, 60*time.Second); err != nil {
		return err
	} else {
		fmt.Println(m[0])
	}
	if err := waitFor(ctx, 60*time.Second, "w2 Ready again", func() bool { return nodesReady(c, "w1", "w2") }); err != nil {
		return err
	}
	if err := d.show("get", "nodes"); err != nil {
		return err
	}
	if err := d.requests(d.lab.Admin, fmt.Sprintf("http://%s:%d/", c.Workers[1].IP, nodePort), 2); err != nil {
		return err
	}

	if keep {
		say("running (DEMO_KEEP=1); explore with: nsenter -t %d -n %s --config %s get pods -A   (Ctrl-C ends)",
			d.lab.Admin.Pid(), d.ctlPath, c.Admin)
		<-ctx.Done()
	}
	say("demo finished")
	return nil
}

var reResumed = regexp.MustCompile(`[^\n]*resuming it[^\n]*`)

// requests asks url n times from host h and prints the answers.
func (d *demo) requests(h *hostlab.Host, url string, n int) error {
	for i := 0; i < n; i++ {
		body, err := d.c.Curl(h, "", url)
		if err != nil {
			return err
		}
		fmt.Printf("%s$ curl %s   %s\n", h.Name, url, body)
	}
	return nil
}

// show prints ctl args as the admin runs them.
func (d *demo) show(args ...string) error {
	say("admin$ ctl %s", strings.Join(args, " "))
	out, err := d.c.Ctl(args...)
	fmt.Print(out)
	return err
}

func nodesReady(c *hostlab.Cluster, names ...string) bool {
	ns, err := c.Nodes()
	if err != nil {
		return false
	}
	for _, n := range names {
		if ns[n].Ready().Status != "True" {
			return false
		}
	}
	return true
}

// waitFor polls cond every 250 ms until it holds, ctx ends or timeout.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// cleanup deletes the demo namespace (its pods stop the graceful way),
// then closes the lab and checks that nothing of it is left; it reports
// whether the machine is clean.
func (d *demo) cleanup() bool {
	clean := true
	d.once.Do(func() {
		say("cleaning up")
		if d.c != nil && !d.c.Node["c1"].Exited() {
			if _, err := d.c.Ctl("delete", "namespace", "demo"); err == nil {
				_ = waitFor(context.Background(), 60*time.Second, "demo pods to stop", func() bool {
					ps, err := d.c.Pods("demo", "app=hello")
					return err == nil && len(ps) == 0
				})
			}
		}
		if err := d.lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		d.left = d.lab.Leftovers()
		if len(d.left) > 0 {
			sort.Strings(d.left)
			fmt.Fprintln(os.Stderr, "the demo left these behind:\n  "+strings.Join(d.left, "\n  "))
			clean = false
			return
		}
		fmt.Println("checked: no process, mount, network namespace, cgroup or directory of the demo is left")
	})
	return clean
}

// dumpLogs prints the tail of each daemon's log after a failure.
func (d *demo) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(d.lab.Dir, "logs", "*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(os.Stderr, "--- %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
