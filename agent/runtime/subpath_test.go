package runtime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/volume"
	"github.com/skiffhq/skiff/integration/testutil"
)

// One pod shows its own IP in its env, mounts exactly one file and one
// directory of a hostPath volume by subPath, creates a directory named from
// its env by subPathExpr, and cannot follow a symlink out of the volume.
func TestPodIPEnvAndSubPath(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	host, outside := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(host, "one.conf"), []byte("just-this-file"), 0o644))
	must(os.WriteFile(filepath.Join(host, "other.conf"), []byte("not-me"), 0o644))
	must(os.MkdirAll(filepath.Join(host, "dir", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(host, "dir", "sub", "f"), []byte("in-dir"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("host-secret"), 0o644))
	// A symlink out of the volume, next to the subPaths: mounting it is
	// refused (TestSubPathEscapesRefused); here it must stay invisible.
	must(os.Symlink(outside, filepath.Join(host, "escape")))
	run(t, e, &runtime.Pod{UID: "subpath", Name: "subpath", Namespace: "ns1", RestartPolicy: runtime.RestartNever,
		TerminationGracePeriodSeconds: i64(1),
		Volumes:                       []runtime.Volume{{Name: "data", Source: &volume.HostPath{Path: host, Type: "Directory"}}},
		Containers: []runtime.Container{{Name: "app", Image: img,
			Env: []runtime.EnvVar{{Name: "MY_IP", FieldPath: runtime.FieldPodIP}, {Name: "MY_IPS", FieldPath: runtime.FieldPodIPs}, {Name: "POD", Value: "subpath"}},
			Command: []string{"sh", "-c", `echo "ip=$MY_IP ips=$MY_IPS"; cat /etc/one.conf; echo; ls /etc/one.conf /sub; cat /sub/f; echo; ` +
				`echo made > /per-pod/x; cat /sub/../escape/secret 2>/dev/null || echo no-escape; echo done`},
			VolumeMounts: []runtime.VolumeMount{
				{Name: "data", MountPath: "/etc/one.conf", SubPath: "one.conf", ReadOnly: true},
				{Name: "data", MountPath: "/sub", SubPath: "dir/sub"},
				{Name: "data", MountPath: "/per-pod", SubPathExpr: "pods/$(POD)"},
			}}}})
	testutil.WaitFor(t, 30*time.Second, "app finished", func() bool {
		ph := status(t, e, "subpath").Phase
		return ph != runtime.PodPending && ph != runtime.PodRunning
	})
	testutil.WaitFor(t, 5*time.Second, "log complete", func() bool { return strings.Contains(logsOf(t, e, "subpath", "app"), "done") })
	logs := logsOf(t, e, "subpath", "app")
	ip := status(t, e, "subpath").PodIP
	if ip == "" || !strings.Contains(logs, "ip="+ip+" ips="+ip+"\n") {
		t.Errorf("pod IP %q not in env:\n%s", ip, logs)
	}
	for _, want := range []string{"just-this-file", "/etc/one.conf\n", "\nf\n", "in-dir"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "not-me") || strings.Contains(logs, "host-secret") || !strings.Contains(logs, "no-escape") {
		t.Errorf("more than the subPath is visible:\n%s", logs)
	}
	if b, err := os.ReadFile(filepath.Join(host, "pods", "subpath", "x")); err != nil || string(b) != "made\n" {
		t.Errorf("subPathExpr dir: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Errorf("outside file touched: %v", err)
	}
	if st := status(t, e, "subpath"); st.Phase != runtime.PodSucceeded {
		t.Errorf("phase %s: %+v", st.Phase, st.ContainerStatuses)
	}
}

// A subPathExpr that expands to a ".." path, and a subPath through a
// symlink that leaves the volume, never mount: each container waits with
// CreateContainerError naming its field.
func TestSubPathEscapesRefused(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	host, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(host, "link")); err != nil {
		t.Fatal(err)
	}
	run(t, e, &runtime.Pod{UID: "subesc", Name: "subesc", TerminationGracePeriodSeconds: i64(1),
		Volumes: []runtime.Volume{{Name: "work", Source: &volume.EmptyDir{}}, {Name: "host", Source: &volume.HostPath{Path: host}}},
		Containers: []runtime.Container{{Name: "dots", Image: img, Command: []string{"sleep", "3600"},
			Env:          []runtime.EnvVar{{Name: "UP", Value: "../.."}},
			VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/w", SubPathExpr: "$(UP)/etc"}}},
			{Name: "link", Image: img, Command: []string{"sleep", "3600"},
				VolumeMounts: []runtime.VolumeMount{{Name: "host", MountPath: "/s", SubPath: "link"}}}}})
	for ctr, want := range map[string][]string{"dots": {"dots.volumeMounts[0].subPathExpr", "'..'"}, "link": {"link.volumeMounts[0]", `"link"`}} {
		testutil.WaitFor(t, 30*time.Second, ctr+" CreateContainerError", func() bool {
			w := ctrStatus(t, e, "subesc", ctr).State.Waiting
			return w != nil && w.Reason == runtime.ReasonCreateError
		})
		msg := ctrStatus(t, e, "subesc", ctr).State.Waiting.Message
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message lacks %q: %q", ctr, w, msg)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host-secret" {
		t.Errorf("outside file changed: %q", b)
	}
}
