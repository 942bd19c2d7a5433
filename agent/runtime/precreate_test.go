package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/volume"
	"github.com/skiffhq/skiff/integration/testutil"
)

// pullFirst stores img so that RunPod creates the first containers while
// CNI runs (the path taken whenever the image is cached).
func pullFirst(t *testing.T, e *runtimetest.Env, img string) {
	t.Helper()
	if _, err := e.Images.Ensure(context.Background(), img, "", image.PullOptions{}); err != nil {
		t.Fatal(err)
	}
}

// With the image cached, containers are created before CNI has finished:
// they must still see the pod IP in /etc/hosts, their hostname, the pod's
// network up, and the init container must run before the app container.
func TestPrecreatedContainersSeeFinishedSandbox(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	pullFirst(t, e, img)
	run(t, e, &runtime.Pod{UID: "pre", Name: "pre", TerminationGracePeriodSeconds: i64(0),
		InitContainers: []runtime.Container{{Name: "init", Image: img, Command: []string{"sh", "-c", "echo init-ran > /scratch/mark"},
			VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/scratch"}}}},
		Containers: []runtime.Container{{Name: "app", Image: img,
			Command:      []string{"sh", "-c", "cat /scratch/mark; cat /etc/hosts; echo host=$(hostname); ip -4 addr show eth0; echo view-done; exec sleep 3600"},
			VolumeMounts: []runtime.VolumeMount{{Name: "work", MountPath: "/scratch"}}}},
		Volumes: []runtime.Volume{{Name: "work", Source: &volume.EmptyDir{}}}})
	st := status(t, e, "pre")
	if st.PodIP == "" {
		t.Fatalf("no pod IP once RunPod returned: %+v", st)
	}
	// Wait for the marker after the last command: waiting for an earlier
	// line raced the output still to come.
	testutil.WaitFor(t, 20*time.Second, "app logged its view", func() bool {
		return strings.Contains(logsOf(t, e, "pre", "app"), "view-done")
	})
	out := logsOf(t, e, "pre", "app")
	for _, want := range []string{"init-ran", st.PodIP + "\tpre", "host=pre", "inet " + st.PodIP + "/"} {
		if !strings.Contains(out, want) {
			t.Errorf("app output lacks %q:\n%s", want, out)
		}
	}
	// The first app start happened in the normal way (after init); the
	// pre-created init container ran exactly once.
	if cs := ctrStatus(t, e, "pre", "init"); cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("init status %+v", cs)
	}
}

// failingNetwork is the real network manager whose Setup fails, to check
// that a failed sandbox removes the containers created alongside it.
type failingNetwork struct{ *network.Manager }

var errInjected = errors.New("injected CNI failure")

func (f failingNetwork) Setup(context.Context, string, string, []network.PortMapping) (*network.Attachment, error) {
	time.Sleep(50 * time.Millisecond) // let the containers get created meanwhile
	return nil, errInjected
}

func TestPrecreatedContainersRemovedWhenCNIFails(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	pullFirst(t, e, img)
	cfg := e.RtCfg
	cfg.StateDir = filepath.Join(e.Dir, "state-failing")
	cfg.Network = failingNetwork{e.Network}
	rt, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = rt.RunPod(context.Background(), &runtime.Pod{UID: "cnifail", Name: "cnifail",
		Containers: []runtime.Container{{Name: "a", Image: img, Command: []string{"sleep", "3600"}},
			{Name: "b", Image: img, Command: []string{"sleep", "3600"}}}})
	if !errors.Is(err, errInjected) {
		t.Fatalf("RunPod: %v, want the CNI error", err)
	}
	if _, err := rt.PodStatus("cnifail"); !errors.Is(err, runtime.ErrPodNotFound) {
		t.Fatalf("failed pod still known: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(cfg.StateDir, "libcontainer"))
	if len(ents) != 0 {
		t.Fatalf("libcontainer state left: %v", ents)
	}
	ids, err := e.Images.RootfsIDs()
	if err != nil || len(ids) != 0 {
		t.Fatalf("rootfs left: %v %v", ids, err)
	}
	// Mounts, cgroups and namespaces are checked by the Env's cleanup.
}
