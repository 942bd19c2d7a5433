package runtime_test

import (
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/volume"
	"github.com/skiffhq/skiff/integration/testutil"
)

// A running container sees a ConfigMap's and a downwardAPI volume's new
// content (the atomic ..data switch) without a restart; a subPath mount of
// the same ConfigMap keeps the content it started with, as in Kubernetes.
func TestVolumeUpdateInRunningPod(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	vols := func(v, labels string) []runtime.Volume {
		return []runtime.Volume{
			{Name: "cfg", Source: &volume.ConfigMap{Name: "cfg", Files: map[string][]byte{"key": []byte(v)}}},
			{Name: "info", Source: &volume.DownwardAPI{Files: map[string][]byte{"labels": []byte(labels)}}},
		}
	}
	run(t, e, &runtime.Pod{UID: "volupd", Name: "volupd", TerminationGracePeriodSeconds: i64(1),
		Volumes: vols("v1", `app="a"`),
		Containers: []runtime.Container{{Name: "app", Image: img,
			Command: []string{"sh", "-c", `while true; do echo "cfg=$(cat /cfg/key) sub=$(cat /sub) labels=$(cat /info/labels)"; sleep 0.1; done`},
			VolumeMounts: []runtime.VolumeMount{{Name: "cfg", MountPath: "/cfg"}, {Name: "cfg", MountPath: "/sub", SubPath: "key"},
				{Name: "info", MountPath: "/info"}}}}})
	testutil.WaitFor(t, 30*time.Second, "first content", func() bool {
		return strings.Contains(logsOf(t, e, "volupd", "app"), `cfg=v1 sub=v1 labels=app="a"`)
	})
	restarts := ctrStatus(t, e, "volupd", "app").RestartCount
	updated, err := e.Runtime.UpdateVolumes("volupd", vols("v2", `app="b"`))
	if err != nil || strings.Join(updated, ",") != "cfg,info" {
		t.Fatalf("updated %v, %v", updated, err)
	}
	testutil.WaitFor(t, 10*time.Second, "new content in the running container", func() bool {
		return strings.Contains(logsOf(t, e, "volupd", "app"), `cfg=v2 sub=v1 labels=app="b"`)
	})
	if n := ctrStatus(t, e, "volupd", "app").RestartCount; n != restarts {
		t.Errorf("container restarted (%d → %d)", restarts, n)
	}
	if again, err := e.Runtime.UpdateVolumes("volupd", vols("v2", `app="b"`)); err != nil || len(again) != 0 {
		t.Errorf("unchanged content rewritten: %v %v", again, err)
	}
}
