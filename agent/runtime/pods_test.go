package runtime_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/volume"
	"github.com/skiffhq/skiff/integration/testutil"
)

func run(t *testing.T, e *runtimetest.Env, pod *runtime.Pod) {
	t.Helper()
	if err := e.Runtime.RunPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

// cgroupFile finds a file of the container's cgroup in whichever hierarchy
// has it (v1 controller dir or the v2 unified tree).
func cgroupFile(t *testing.T, pid int, names ...string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		for _, m := range strings.Split(string(mi), "\n") {
			f := strings.Fields(m)
			if len(f) < 5 || !strings.Contains(m, " - cgroup") {
				continue
			}
			for _, n := range names {
				p := filepath.Join(f[4], parts[2], n)
				if c, err := os.ReadFile(p); err == nil {
					return p, strings.TrimSpace(string(c))
				}
			}
		}
	}
	t.Fatalf("no cgroup file %v for pid %d", names, pid)
	return "", ""
}

// A memory hog over its limit is OOM-killed, reported as OOMKilled and
// restarted; a cpu limit shows up as the CFS quota of its cgroup.
func TestOOMKilledAndCPUQuota(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "oom", Name: "oom", TerminationGracePeriodSeconds: i64(0),
		Containers: []runtime.Container{
			{Name: "hog", Image: img, Command: []string{"sh", "-c", "echo start; dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived"},
				Resources: runtime.Resources{Limits: runtime.ResourceList{Memory: 16 << 20}}},
			{Name: "cpu", Image: img, Command: []string{"sleep", "3600"},
				Resources: runtime.Resources{Requests: runtime.ResourceList{MilliCPU: 100}, Limits: runtime.ResourceList{MilliCPU: 250, Memory: 64 << 20}}},
		}})
	testutil.WaitFor(t, 30*time.Second, "hog OOM-killed and restarted", func() bool {
		cs := ctrStatus(t, e, "oom", "hog")
		lt := cs.LastTerminationState.Terminated
		return cs.RestartCount >= 1 && lt != nil && lt.Reason == runtime.ReasonOOMKilled
	})
	lt := ctrStatus(t, e, "oom", "hog").LastTerminationState.Terminated
	if lt.ExitCode != 137 {
		t.Errorf("OOMKilled exit code %d, want 137", lt.ExitCode)
	}
	testutil.WaitFor(t, 10*time.Second, "cpu container running", func() bool { return running(t, e, "oom", "cpu") })
	pid := ctrStatus(t, e, "oom", "cpu").PID
	path, v := cgroupFile(t, pid, "cpu.cfs_quota_us", "cpu.max")
	if !strings.HasPrefix(v, "25000") {
		t.Errorf("%s = %q, want quota 25000 (250m of a 100ms period)", path, v)
	}
	if !strings.Contains(path, e.Cgroup+"/pods/oom/cpu") {
		t.Errorf("cgroup %s is not under the absolute parent %s", path, e.Cgroup)
	}
	path, v = cgroupFile(t, pid, "memory.limit_in_bytes", "memory.max")
	if v != fmt.Sprint(64<<20) {
		t.Errorf("%s = %q, want %d", path, v, 64<<20)
	}
}

// A failing liveness probe gets the container killed and restarted, with
// the CrashLoopBackOff delay doubling each time.
func TestLivenessRestartsWithBackoff(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "live", Name: "live", TerminationGracePeriodSeconds: i64(0),
		Containers: []runtime.Container{{Name: "app", Image: img, Command: []string{"sleep", "3600"},
			LivenessProbe: &probe.Probe{Exec: &probe.ExecAction{Command: []string{"test", "-f", "/tmp/healthy"}}, PeriodSeconds: 1, FailureThreshold: 1}}}})
	seen := map[string]bool{}
	testutil.WaitFor(t, 40*time.Second, "three restarts", func() bool {
		cs := ctrStatus(t, e, "live", "app")
		if w := cs.State.Waiting; w != nil && w.Reason == runtime.ReasonCrashLoopBackOff {
			seen[strings.Fields(w.Message)[1]] = true
		}
		return cs.RestartCount >= 3
	})
	for _, d := range []string{"200ms", "400ms", "800ms"} {
		if !seen[d] {
			t.Errorf("back-off %s not observed; saw %v", d, seen)
		}
	}
	lt := ctrStatus(t, e, "live", "app").LastTerminationState.Terminated
	if lt == nil || !strings.Contains(lt.Message, "liveness probe failed") {
		t.Errorf("last termination %+v does not name the liveness probe", lt)
	}
}

// Readiness flips both ways; exec returns output and exit code (plain and
// with a TTY that is resized); logs hold both streams and follow.
func TestReadinessExecLogs(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "rel", Name: "rel", TerminationGracePeriodSeconds: i64(0),
		Containers: []runtime.Container{{Name: "app", Image: img,
			Command:        []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"},
			Env:            []runtime.EnvVar{{Name: "GREETING", Value: "hi"}},
			ReadinessProbe: &probe.Probe{Exec: &probe.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}, PeriodSeconds: 1, FailureThreshold: 1}}}})
	testutil.WaitFor(t, 20*time.Second, "running", func() bool { return running(t, e, "rel", "app") })
	ctx := context.Background()

	var out, errb bytes.Buffer
	code, err := e.Runtime.Exec(ctx, "rel", "app", runtime.ExecOptions{Cmd: []string{"sh", "-c", "echo out:$GREETING:$IMAGE_ENV; echo err >&2; exit 3"}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 3 || out.String() != "out:hi:from-image\n" || errb.String() != "err\n" {
		t.Fatalf("exec: code=%d err=%v stdout=%q stderr=%q", code, err, out.String(), errb.String())
	}
	code, err = e.Runtime.Exec(ctx, "rel", "app", runtime.ExecOptions{Cmd: []string{"cat"}, Stdin: strings.NewReader("piped"), Stdout: &out})
	if err != nil || code != 0 || !strings.HasSuffix(out.String(), "piped") {
		t.Fatalf("exec stdin: code=%d err=%v out=%q", code, err, out.String())
	}

	// TTY: stty reports the initial size, then the resized one.
	inR, inW := io.Pipe()
	resize := make(chan runtime.WinSize, 1)
	var tty testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		c, _ := e.Runtime.Exec(ctx, "rel", "app", runtime.ExecOptions{Cmd: []string{"sh"}, TTY: true, Stdin: inR, Stdout: &tty,
			Size: runtime.WinSize{Width: 100, Height: 40}, Resize: resize})
		done <- c
	}()
	fmt.Fprintln(inW, "stty size")
	testutil.WaitFor(t, 10*time.Second, "initial tty size", func() bool { return strings.Contains(tty.String(), "40 100") })
	resize <- runtime.WinSize{Width: 120, Height: 50}
	testutil.WaitFor(t, 10*time.Second, "resized tty", func() bool {
		fmt.Fprintln(inW, "stty size")
		return strings.Contains(tty.String(), "50 120")
	})
	fmt.Fprintln(inW, "exit 7")
	select {
	case c := <-done:
		if c != 7 {
			t.Errorf("tty exec exit %d, want 7", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tty exec did not end")
	}

	if status(t, e, "rel").Ready {
		t.Fatal("ready before /tmp/ready exists")
	}
	if c, err := e.Runtime.Exec(ctx, "rel", "app", runtime.ExecOptions{Cmd: []string{"touch", "/tmp/ready"}}); err != nil || c != 0 {
		t.Fatal(c, err)
	}
	testutil.WaitFor(t, 10*time.Second, "Ready", func() bool { return status(t, e, "rel").Ready })
	if c, err := e.Runtime.Exec(ctx, "rel", "app", runtime.ExecOptions{Cmd: []string{"rm", "/tmp/ready"}}); err != nil || c != 0 {
		t.Fatal(c, err)
	}
	testutil.WaitFor(t, 10*time.Second, "not Ready again", func() bool { return !status(t, e, "rel").Ready })

	logs := logsOf(t, e, "rel", "app")
	if !strings.Contains(logs, "to-stdout\n") || !strings.Contains(logs, "to-stderr\n") {
		t.Fatalf("logs lack a stream: %q", logs[:min(len(logs), 200)])
	}
	var onlyErr bytes.Buffer
	_ = e.Runtime.Logs(ctx, "rel", "app", runtime.LogOptions{Stream: "stderr"}, &onlyErr)
	if onlyErr.String() != "to-stderr\n" {
		t.Errorf("stderr only: %q", onlyErr.String())
	}
	var tail bytes.Buffer
	_ = e.Runtime.Logs(ctx, "rel", "app", runtime.LogOptions{TailLines: 2}, &tail)
	if n := strings.Count(tail.String(), "\n"); n != 2 {
		t.Errorf("tail 2 gave %d lines: %q", n, tail.String())
	}
	// Follow: new ticks keep arriving after the call started.
	var last int
	fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(tail.String()[strings.LastIndex(strings.TrimSpace(tail.String()), "tick"):]), "tick "), "%d", &last)
	fctx, cancel := context.WithCancel(ctx)
	var follow testutil.SyncBuffer
	fdone := make(chan error, 1)
	go func() {
		fdone <- e.Runtime.Logs(fctx, "rel", "app", runtime.LogOptions{Follow: true, TailLines: 1}, &follow)
	}()
	want := fmt.Sprintf("tick %d\n", last+10)
	testutil.WaitFor(t, 10*time.Second, "followed "+want, func() bool { return strings.Contains(follow.String(), want) })
	cancel()
	if err := <-fdone; err != nil {
		t.Fatal(err)
	}
}

// A new Runtime on the same state dir re-attaches: same PID, still managed
// (exec works; when the process dies it is restarted).
func TestRuntimeRestartReattaches(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "re", Name: "re", TerminationGracePeriodSeconds: i64(0),
		Containers: []runtime.Container{{Name: "app", Image: img, Command: []string{"sh", "-c", "echo before; exec sleep 3600"}}}})
	testutil.WaitFor(t, 20*time.Second, "running", func() bool { return running(t, e, "re", "app") })
	pid := ctrStatus(t, e, "re", "app").PID
	e.Reopen(t)
	cs := ctrStatus(t, e, "re", "app")
	if cs.State.Running == nil || cs.PID != pid || cs.RestartCount != 0 {
		t.Fatalf("after re-attach: %+v (pid was %d)", cs, pid)
	}
	var out bytes.Buffer
	if c, err := e.Runtime.Exec(context.Background(), "re", "app", runtime.ExecOptions{Cmd: []string{"echo", "still-here"}, Stdout: &out}); err != nil || c != 0 || out.String() != "still-here\n" {
		t.Fatalf("exec after re-attach: %d %v %q", c, err, out.String())
	}
	if !strings.Contains(logsOf(t, e, "re", "app"), "before") {
		t.Error("log lost across re-attach")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "restart after the re-attached process died", func() bool {
		cs := ctrStatus(t, e, "re", "app")
		return cs.RestartCount == 1 && cs.State.Running != nil && cs.PID != pid
	})
}

// Leftovers of a pod whose record is gone (agent crashed, pod deleted
// meanwhile) are removed when the runtime starts.
func TestLeftoversCleanedOnStart(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "orphan", Name: "orphan", Volumes: []runtime.Volume{{Name: "s", Source: &volume.Secret{SecretName: "s", Files: map[string][]byte{"k": []byte("v")}}}},
		Containers: []runtime.Container{{Name: "app", Image: img, Command: []string{"sleep", "3600"}, VolumeMounts: []runtime.VolumeMount{{Name: "s", MountPath: "/s"}}}}})
	testutil.WaitFor(t, 20*time.Second, "running", func() bool { return running(t, e, "orphan", "app") })
	if len(e.Leftovers()) == 0 {
		t.Fatal("leak check sees nothing for a running pod: it would not catch leaks")
	}
	if err := e.Runtime.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.RtCfg.StateDir, "pods", "orphan", "pod.json")); err != nil {
		t.Fatal(err)
	}
	e.Reopen(t)
	if len(e.Runtime.ListPods()) != 0 {
		t.Fatal("orphan still listed")
	}
	if l := e.Leftovers(); len(l) > 0 {
		t.Fatalf("leftovers after restart cleanup: %v", l)
	}
}

// Init containers run in order before the app; volumes of every kind,
// dropped/added capabilities, a read-only rootfs, runAsUser; the pod
// completes (restartPolicy Never).
func TestInitVolumesSecurity(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "h.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	mode := int32(0o400)
	uid := int64(65534)
	run(t, e, &runtime.Pod{UID: "initvol", Name: "initvol", RestartPolicy: runtime.RestartNever,
		Volumes: []runtime.Volume{
			{Name: "work", Source: &volume.EmptyDir{}},
			{Name: "mem", Source: &volume.EmptyDir{Medium: "Memory"}},
			{Name: "host", Source: &volume.HostPath{Path: host, Type: "Directory"}},
			{Name: "cfg", Source: &volume.ConfigMap{Name: "cfg", Files: map[string][]byte{"key": []byte("cm-value")}}},
			{Name: "sec", Source: &volume.Secret{SecretName: "sec", Files: map[string][]byte{"pw": []byte("s3cret")}, DefaultMode: &mode}},
		},
		InitContainers: []runtime.Container{
			{Name: "init1", Image: img, Command: []string{"sh", "-c", "echo one > /scratch/order"}, VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/scratch"}}},
			{Name: "init2", Image: img, Command: []string{"sh", "-c", "echo two >> /scratch/order"}, VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/scratch"}}},
		},
		Containers: []runtime.Container{{Name: "app", Image: img,
			Command: []string{"sh", "-c", `cat /scratch/order /cfg/key /sec/pw /host/h.txt; echo; stat -L -c %a /sec/pw; touch /rootfile 2>/dev/null || echo rofs-denied; echo x > /mem/f && echo mem-ok; grep CapEff /proc/self/status; hostname`},
			VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/scratch", ReadOnly: true}, {Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec"},
				{Name: "host", MountPath: "/host", ReadOnly: true}, {Name: "mem", MountPath: "/mem"}},
			SecurityContext: &runtime.SecurityContext{ReadOnlyRootFilesystem: true,
				Capabilities: &runtime.Capabilities{Drop: []string{"ALL"}, Add: []string{"NET_BIND_SERVICE", "DAC_OVERRIDE"}}},
		}, {Name: "nobody", Image: img, Command: []string{"id", "-u"}, SecurityContext: &runtime.SecurityContext{RunAsUser: &uid}}},
	})
	testutil.WaitFor(t, 30*time.Second, "pod Succeeded", func() bool { return status(t, e, "initvol").Phase == runtime.PodSucceeded })
	// Output is pumped from the pipes asynchronously: wait for the last line.
	testutil.WaitFor(t, 5*time.Second, "app log complete", func() bool { return strings.Contains(logsOf(t, e, "initvol", "app"), "initvol") })
	testutil.WaitFor(t, 5*time.Second, "nobody log", func() bool { return logsOf(t, e, "initvol", "nobody") != "" })
	logs := logsOf(t, e, "initvol", "app")
	for _, want := range []string{"one\ntwo\n", "cm-value", "s3cret", "from-host", "\n400\n", "rofs-denied", "mem-ok", "CapEff:\t0000000000000402", "initvol"} {
		if !strings.Contains(logs, want) {
			t.Errorf("app log lacks %q:\n%s", want, logs)
		}
	}
	if l := logsOf(t, e, "initvol", "nobody"); l != "65534\n" {
		t.Errorf("runAsUser: id -u = %q", l)
	}
	for _, cs := range status(t, e, "initvol").InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.Reason != runtime.ReasonCompleted {
			t.Errorf("init %s: %+v", cs.Name, cs.State)
		}
	}
}

// Stop: a container that handles SIGTERM exits cleanly; one that ignores it
// is killed after the grace period.
func TestStopGracePeriod(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "grace", Name: "grace", TerminationGracePeriodSeconds: i64(1),
		Containers: []runtime.Container{
			{Name: "polite", Image: img, Command: []string{"sh", "-c", "trap 'echo got-term; exit 0' TERM; echo up; while true; do sleep 0.1; done"}},
			{Name: "stubborn", Image: img, Command: []string{"sleep", "3600"}},
		}})
	testutil.WaitFor(t, 20*time.Second, "both running", func() bool {
		return running(t, e, "grace", "polite") && running(t, e, "grace", "stubborn") && strings.Contains(logsOf(t, e, "grace", "polite"), "up")
	})
	start := time.Now()
	if err := e.Runtime.StopPod(context.Background(), "grace", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("stop took %s: the grace period was not waited for", d)
	}
	p, s := ctrStatus(t, e, "grace", "polite").State.Terminated, ctrStatus(t, e, "grace", "stubborn").State.Terminated
	if p == nil || p.ExitCode != 0 || p.Reason != runtime.ReasonCompleted {
		t.Errorf("polite: %+v", p)
	}
	if s == nil || s.ExitCode != 137 || s.Signal != 9 {
		t.Errorf("stubborn: %+v; its log:\n%s", s, logsOf(t, e, "grace", "stubborn"))
	}
	if !strings.Contains(logsOf(t, e, "grace", "polite"), "got-term") {
		t.Error("SIGTERM handler did not run")
	}
}

// A missing image and a bad reference give Kubernetes' waiting reasons with
// the registry's message.
func TestImagePullFailures(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	run(t, e, &runtime.Pod{UID: "pullfail", Name: "pullfail",
		Containers: []runtime.Container{
			{Name: "missing", Image: e.Registry.Host + "/nope:1"},
			{Name: "bad", Image: "UPPER/Case::x"},
		}})
	sawPull, sawBackoff := false, false
	testutil.WaitFor(t, 20*time.Second, "ErrImagePull then ImagePullBackOff", func() bool {
		w := ctrStatus(t, e, "pullfail", "missing").State.Waiting
		if w != nil && w.Reason == runtime.ReasonErrImagePull && strings.Contains(w.Message, "NAME_UNKNOWN") {
			sawPull = true
		}
		if w != nil && w.Reason == runtime.ReasonImagePullBackOff && strings.Contains(w.Message, "NAME_UNKNOWN") {
			sawBackoff = true
		}
		return sawPull && sawBackoff
	})
	w := ctrStatus(t, e, "pullfail", "bad").State.Waiting
	if w == nil || w.Reason != runtime.ReasonInvalidImageName {
		t.Errorf("bad reference: %+v", w)
	}
}

func TestValidateNamesField(t *testing.T) {
	cases := map[string]*runtime.Pod{
		"containers[0].name":          {UID: "u", Containers: []runtime.Container{{Name: "Bad_Name", Image: "x"}}},
		"volumeMounts[0].name \"v\"":  {UID: "u", Containers: []runtime.Container{{Name: "a", Image: "x", VolumeMounts: []runtime.VolumeMount{{Name: "v", MountPath: "/v"}}}}},
		"restartPolicy \"Sometimes\"": {UID: "u", RestartPolicy: "Sometimes", Containers: []runtime.Container{{Name: "a", Image: "x"}}},
		"limits.memory":               {UID: "u", Containers: []runtime.Container{{Name: "a", Image: "x", Resources: runtime.Resources{Limits: runtime.ResourceList{Memory: 10}}}}},
		"capabilities":                {UID: "u", Containers: []runtime.Container{{Name: "a", Image: "x", SecurityContext: &runtime.SecurityContext{Capabilities: &runtime.Capabilities{Add: []string{"FLY"}}}}}},
	}
	for want, p := range cases {
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want error naming %q, got %v", want, err)
		}
	}
}

// A removal cut short (its context ends while containers are still being
// stopped, as when the agent shuts down mid-delete) is not remembered as
// done: the next RemovePod finishes the job instead of returning the old
// error, and nothing is left behind.
func TestRemoveCutShortIsRetried(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "cut", Name: "cut", TerminationGracePeriodSeconds: i64(2),
		Containers: []runtime.Container{{Name: "stubborn", Image: img, Command: []string{"sleep", "3600"}}}})
	testutil.WaitFor(t, 20*time.Second, "running", func() bool { return running(t, e, "cut", "stubborn") })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.Runtime.RemovePod(ctx, "cut"); err == nil {
		t.Fatal("RemovePod within 200ms of a 2s grace period succeeded; want the context's error")
	}
	if err := e.Runtime.RemovePod(context.Background(), "cut"); err != nil {
		t.Fatalf("second RemovePod after a cut-short one: %v", err)
	}
	if pods := e.Runtime.ListPods(); len(pods) != 0 {
		t.Fatalf("pods after removal: %+v", pods)
	}
	if leaks := e.Leftovers(); len(leaks) > 0 {
		t.Fatalf("leftovers after the retried removal:\n  %s", strings.Join(leaks, "\n  "))
	}
}
