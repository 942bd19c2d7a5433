package runtime_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/integration/testutil"
)

func TestMain(m *testing.M) { runtimetest.Main(m) }

func i64(v int64) *int64 { return &v }

func logsOf(t *testing.T, e *runtimetest.Env, uid, ctr string) string {
	t.Helper()
	var b bytes.Buffer
	if err := e.Runtime.Logs(context.Background(), uid, ctr, runtime.LogOptions{}, &b); err != nil {
		t.Fatalf("logs %s/%s: %v", uid, ctr, err)
	}
	return b.String()
}

func status(t *testing.T, e *runtimetest.Env, uid string) runtime.PodStatus {
	t.Helper()
	st, err := e.Runtime.PodStatus(uid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func ctrStatus(t *testing.T, e *runtimetest.Env, uid, name string) runtime.ContainerStatus {
	t.Helper()
	st := status(t, e, uid)
	for _, cs := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	t.Fatalf("no status for %s/%s", uid, name)
	return runtime.ContainerStatus{}
}

func running(t *testing.T, e *runtimetest.Env, uid, name string) bool {
	return ctrStatus(t, e, uid, name).State.Running != nil
}

// Two containers share the pod's network namespace: one serves HTTP on
// 8080, the other fetches it from 127.0.0.1. The web container's httpGet
// readiness probe (dialled inside the pod netns) makes the pod Ready.
func TestTwoContainerPodLocalhost(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	pod := &runtime.Pod{UID: "two-ctr", Name: "web", Namespace: "default",
		TerminationGracePeriodSeconds: i64(1),
		Containers: []runtime.Container{
			{Name: "web", Image: img, Command: []string{"sh", "-c", "echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"},
				ReadinessProbe: &probe.Probe{HTTPGet: &probe.HTTPGetAction{Path: "/index.html", Port: 8080}, PeriodSeconds: 1}},
			{Name: "client", Image: img, Command: []string{"sh", "-c", "until wget -q -O - http://127.0.0.1:8080/index.html; do sleep 0.1; done; exec sleep 3600"}},
		}}
	if err := e.Runtime.RunPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "client fetched the page over localhost", func() bool {
		return strings.Contains(logsOf(t, e, "two-ctr", "client"), "hello-from-web")
	})
	testutil.WaitFor(t, 10*time.Second, "pod Ready via httpGet readiness", func() bool { return status(t, e, "two-ctr").Ready })
	st := status(t, e, "two-ctr")
	if st.Phase != runtime.PodRunning || st.PodIP == "" {
		t.Fatalf("phase %s ip %q", st.Phase, st.PodIP)
	}
	if err := e.Runtime.StopPod(context.Background(), "two-ctr", nil); err != nil {
		t.Fatal(err)
	}
	for _, cs := range status(t, e, "two-ctr").ContainerStatuses {
		if cs.State.Terminated == nil {
			t.Errorf("%s not terminated after StopPod: %+v", cs.Name, cs.State)
		}
	}
}
