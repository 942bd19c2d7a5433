package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/volume"
	"github.com/skiffhq/skiff/integration/testutil"
)

// postStart writes a file inside the container that its process waits
// for, and the container is Ready only after the hook returned; preStop
// runs before SIGTERM (the order is read from a hostPath file); a failing
// postStart kills its container, which restarts with the hook's failure as
// the termination message.
func TestLifecycleHooks(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	host := t.TempDir()
	run(t, e, &runtime.Pod{UID: "hooks", Name: "hooks", TerminationGracePeriodSeconds: i64(10),
		Volumes: []runtime.Volume{{Name: "h", Source: &volume.HostPath{Path: host, Type: "Directory"}}},
		Containers: []runtime.Container{
			{Name: "app", Image: img,
				Command:      []string{"sh", "-c", `trap 'echo term >> /h/order; exit 0' TERM; until [ -f /tmp/post ]; do sleep 0.05; done; echo "saw $(cat /tmp/post)"; while true; do sleep 0.1; done`},
				VolumeMounts: []runtime.VolumeMount{{Name: "h", MountPath: "/h"}},
				Lifecycle: &runtime.Lifecycle{
					PostStart: &runtime.LifecycleHandler{Exec: &probe.ExecAction{Command: []string{"sh", "-c", "sleep 1; echo poststart-ran > /tmp/post; date +%s%N > /h/post-done"}}},
					PreStop:   &runtime.LifecycleHandler{Exec: &probe.ExecAction{Command: []string{"sh", "-c", "echo prestop >> /h/order"}}},
				}},
			{Name: "badhook", Image: img, Command: []string{"sleep", "3600"},
				Lifecycle: &runtime.Lifecycle{PostStart: &runtime.LifecycleHandler{Exec: &probe.ExecAction{Command: []string{"sh", "-c", "echo nope; exit 3"}}}}},
		}})
	// Not Ready while the hook runs: the hook's last step comes first.
	testutil.WaitFor(t, 30*time.Second, "app Ready", func() bool { return ctrStatus(t, e, "hooks", "app").Ready })
	if _, err := os.Stat(filepath.Join(host, "post-done")); err != nil {
		t.Errorf("app was Ready before its postStart hook finished: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "app saw the postStart file", func() bool {
		return strings.Contains(logsOf(t, e, "hooks", "app"), "saw poststart-ran")
	})
	testutil.WaitFor(t, 30*time.Second, "badhook restarted after its postStart failed", func() bool {
		cs := ctrStatus(t, e, "hooks", "badhook")
		lt := cs.LastTerminationState.Terminated
		return cs.RestartCount >= 1 && lt != nil && strings.Contains(lt.Message, "FailedPostStartHook") && strings.Contains(lt.Message, "exited 3")
	})
	if err := e.Runtime.StopPod(context.Background(), "hooks", nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(host, "order"))
	if err != nil || string(b) != "prestop\nterm\n" {
		t.Errorf("order of preStop and SIGTERM: %q %v", b, err)
	}
	if term := ctrStatus(t, e, "hooks", "app").State.Terminated; term == nil || term.ExitCode != 0 {
		t.Errorf("app after stop: %+v", term)
	}
}
