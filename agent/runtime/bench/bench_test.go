package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	devcfg "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
)

func TestMain(m *testing.M) { runtimetest.Main(m) }

const pods = 100

var only = flag.String("only", "", "run only one part (seq, bare, runc or burst), e.g. under perf or with -cpuprofile")

func part(name string) bool { return *only == "" || *only == name }

// cpuTime is the CPU (user+system) used so far by this process and its
// reaped children: container inits, CNI plugins. Less sensitive to other
// load on the machine than wall time.
func cpuTime() time.Duration {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func podSpec(uid, img string) *runtime.Pod {
	g := int64(0)
	return &runtime.Pod{UID: uid, Name: uid, TerminationGracePeriodSeconds: &g,
		Containers: []runtime.Container{{Name: "app", Image: img, Command: []string{"sleep", "3600"}}}}
}

func waitRunning(rt *runtime.Runtime, uid string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := rt.PodStatus(uid)
		if err != nil {
			return err
		}
		if len(st.ContainerStatuses) == 1 && st.ContainerStatuses[0].State.Running != nil {
			return nil
		}
		if w := st.ContainerStatuses[0].State.Waiting; w != nil && w.Reason != runtime.ReasonContainerCreating {
			return fmt.Errorf("%s: %s: %s", uid, w.Reason, w.Message)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return fmt.Errorf("%s: not running after 30s", uid)
}

// waitAllRunning polls pods prefix0…prefixN-1 until all are running, a
// RunPod fails (errs) or one reports a waiting reason other than creating.
func waitAllRunning(rt *runtime.Runtime, prefix string, n int, errs <-chan error) error {
	pending := map[string]bool{}
	for i := 0; i < n; i++ {
		pending[fmt.Sprintf("%s%d", prefix, i)] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(pending) > 0 {
		select {
		case err := <-errs:
			return err
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d pods not running after 60s", len(pending))
		}
		for uid := range pending {
			st, err := rt.PodStatus(uid)
			if errors.Is(err, runtime.ErrPodNotFound) {
				continue // RunPod has not registered it yet
			}
			if err != nil {
				return err
			}
			if cs := st.ContainerStatuses; len(cs) == 1 && cs[0].State.Running != nil {
				delete(pending, uid)
			} else if w := cs[0].State.Waiting; w != nil && w.Reason != runtime.ReasonContainerCreating {
				return fmt.Errorf("%s: %s: %s", uid, w.Reason, w.Message)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func BenchmarkRuntime(b *testing.B) {
	e := runtimetest.NewEnv(b)
	phases := newPhaseCollector()
	e.RtCfg.Logger = slog.New(phases)
	e.Reopen(b) // same runtime, logging pod start phases to the collector
	img := e.Registry.BusyboxImage(b, "busybox", nil)
	ctx := context.Background()
	rt := e.Runtime
	// Warm: pull the image once.
	if err := rt.RunPod(ctx, podSpec("warm", img)); err != nil {
		b.Fatal(err)
	}
	if err := waitRunning(rt, "warm"); err != nil {
		b.Fatal(err)
	}
	if err := rt.RemovePod(ctx, "warm"); err != nil {
		b.Fatal(err)
	}

	// 1. Sequential pod starts (sandbox: netns+CNI, ipc, uts; one container).
	phases.setEnabled(true)
	var podTimes []time.Duration
	cpu0 := cpuTime()
	for i := 0; i < pods && part("seq"); i++ {
		uid := fmt.Sprintf("seq%d", i)
		t0 := time.Now()
		if err := rt.RunPod(ctx, podSpec(uid, img)); err != nil {
			b.Fatal(err)
		}
		if err := waitRunning(rt, uid); err != nil {
			b.Fatal(err)
		}
		podTimes = append(podTimes, time.Since(t0))
		if err := rt.RemovePod(ctx, uid); err != nil {
			b.Fatal(err)
		}
	}

	seqCPU := (cpuTime() - cpu0) / pods
	progress("sequential pods done: p50 %.1f ms", ms(pct(podTimes, .5)))
	phases.setEnabled(false)
	phases.print("sequential pods")
	phases.reset()
	// 2. Bare libcontainer create+start of the same image rootfs.
	stored, ok := e.Images.Lookup(img)
	if !ok {
		b.Fatal("image not in store")
	}
	var bare, runcTimes []time.Duration
	if part("bare") {
		bare = bareLibcontainer(b, e, stored)
	}
	// 3. runc run of the same rootfs.
	if part("runc") {
		runcTimes = runcRun(b, e, stored)
	}

	progress("bare libcontainer and runc done")
	// 4. Burst: 100 pods at once. One goroutine polls them all every
	// millisecond (100 goroutines each polling every 200 µs would spend a
	// good part of the 2 cores on status calls, which no sync loop does).
	phases.setEnabled(true)
	burstPods := pods
	if !part("burst") {
		burstPods = 0
	}
	cpu0 = cpuTime()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for i := 0; i < burstPods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.RunPod(ctx, podSpec(fmt.Sprintf("burst%d", i), img)); err != nil {
				errs <- err
			}
		}()
	}
	if err := waitAllRunning(rt, "burst", burstPods, errs); err != nil {
		b.Fatal(err)
	}
	burst := time.Since(t0)
	phases.setEnabled(false)
	phases.print("burst")
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for i := 0; i < burstPods; i++ {
		if err := rt.RemovePod(ctx, fmt.Sprintf("burst%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	var burstCPU time.Duration
	if burstPods > 0 {
		burstCPU = (cpuTime() - cpu0) / time.Duration(burstPods)
	}

	fmt.Printf("\n%-34s %8s %8s %8s\n", "measure (n=100)", "p50 ms", "p99 ms", "max ms")
	row := func(n string, ds []time.Duration) {
		if len(ds) == 0 {
			fmt.Printf("%-34s %8s\n", n, "n/a")
			return
		}
		fmt.Printf("%-34s %8.1f %8.1f %8.1f\n", n, ms(pct(ds, .5)), ms(pct(ds, .99)), ms(pct(ds, 1)))
	}
	row("pod start (sandbox+1 container)", podTimes)
	row("bare libcontainer create+start", bare)
	row("runc run -d (same rootfs)", runcTimes)
	fmt.Printf("%-34s %8.2f s\n", "burst: 100 pods all running", burst.Seconds())
	fmt.Printf("cpu per pod, start+remove (this process and its children): sequential %.1f ms, burst %.1f ms\n", ms(seqCPU), ms(burstCPU))
	runcP50 := -1.0
	if len(runcTimes) > 0 {
		runcP50 = ms(pct(runcTimes, .5))
	}
	fmt.Printf("runtime-bench: pod_start_p50_ms=%.0f pod_start_p99_ms=%.0f bare_libcontainer_p50_ms=%.0f runc_p50_ms=%.0f burst100_s=%.1f\n",
		ms(pct(podTimes, .5)), ms(pct(podTimes, .99)), ms(pct(bare, .5)), runcP50, burst.Seconds())
	b.ReportMetric(ms(pct(podTimes, .5)), "pod_p50_ms")
	b.ReportMetric(ms(pct(podTimes, .99)), "pod_p99_ms")
}

// bareConfig is the minimum libcontainer needs for the same rootfs: own
// namespaces (an empty netns), cgroup under the env's root.
func bareConfig(rootfs, cg string) *configs.Config {
	const fl = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	caps := []string{"CAP_KILL", "CAP_CHOWN"}
	return &configs.Config{
		Rootfs:       rootfs,
		Capabilities: &configs.Capabilities{Bounding: caps, Effective: caps, Permitted: caps},
		Namespaces: configs.Namespaces([]configs.Namespace{{Type: configs.NEWNS}, {Type: configs.NEWUTS},
			{Type: configs.NEWIPC}, {Type: configs.NEWPID}, {Type: configs.NEWNET}}),
		Cgroups: &cgroups.Cgroup{Path: cg, Resources: &cgroups.Resources{Devices: deviceRules()}},
		Devices: specconv.AllowedDevices,
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: fl},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755"},
		},
	}
}

func deviceRules() []*devcfg.Rule {
	var rules []*devcfg.Rule
	for _, d := range specconv.AllowedDevices {
		rules = append(rules, &d.Rule)
	}
	return rules
}

func bareLibcontainer(b *testing.B, e *runtimetest.Env, img *image.Image) []time.Duration {
	rootfs, err := e.Images.MountRootfs("bench-bare", img)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Images.UnmountRootfs("bench-bare")
	root := filepath.Join(e.Dir, "bare-state")
	var out []time.Duration
	for i := 0; i < pods; i++ {
		id := fmt.Sprintf("bare%d", i)
		t0 := time.Now()
		c, err := libcontainer.Create(root, id, bareConfig(rootfs, filepath.Join(e.Cgroup, "bare", id)))
		if err != nil {
			b.Fatal(err)
		}
		p := &libcontainer.Process{Args: []string{"/bin/sleep", "3600"}, Env: []string{"PATH=/bin"}, Init: true}
		if err := c.Run(p); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
		_ = c.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		if err := c.Destroy(); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func runcRun(b *testing.B, e *runtimetest.Env, img *image.Image) []time.Duration {
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Logf("runc not installed (make deps installs it): skipping the runc column")
		return nil
	}
	rootfs, err := e.Images.MountRootfs("bench-runc", img)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Images.UnmountRootfs("bench-runc")
	bundle := filepath.Join(e.Dir, "runc-bundle")
	state := filepath.Join(e.Dir, "runc-state")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(raw, &spec); err != nil {
		b.Fatal(err)
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sleep", "3600"}
	lin := spec["linux"].(map[string]any)
	lin["cgroupsPath"] = filepath.Join(e.Cgroup, "runc")
	raw, _ = json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for i := 0; i < pods; i++ {
		id := fmt.Sprintf("runc%d", i)
		t0 := time.Now()
		// -d hands runc's stdio to the container: give it files, not pipes,
		// or waiting for the pipes to close would wait for the container.
		errf, err := os.CreateTemp(e.Dir, "runc-stderr")
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(runc, "--root", state, "run", "-d", "--bundle", bundle, id)
		cmd.Stderr = errf
		err = cmd.Run()
		errf.Close()
		if err != nil {
			o, _ := os.ReadFile(errf.Name())
			b.Fatalf("runc run: %v %s", err, o)
		}
		out = append(out, time.Since(t0))
		if o, err := exec.Command(runc, "--root", state, "delete", "-f", id).CombinedOutput(); err != nil {
			b.Fatalf("runc delete: %v %s", err, o)
		}
	}
	return out
}

// progress goes to stderr at once (benchmark logs only appear at the end).
func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}
