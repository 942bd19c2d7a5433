package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestStatefulSetDataOutlivesItsPod (root): a real agent (its node's
// certificate, the node authorizer) with a control plane running the
// scheduler, the StatefulSet controller and the volume controller. A
// StatefulSet with a volumeClaimTemplate gets claim www-data-0, provisioned
// by the default class "local" as a directory under the agent's volume
// directory on this node; its pod (a real container) writes its uid into the
// volume; the pod is deleted, and its replacement reads what the first pod
// wrote from the same claim.
func TestStatefulSetDataOutlivesItsPod(t *testing.T) {
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	nodeName := fmt.Sprintf("storage-%d", os.Getpid())
	graphCtx, stopGraph := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stopGraph(); wg.Wait() })
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler", "statefulset", "persistentvolume", "volumeprotection"},
		TuneAPI: func(cfg *api.Config) {
			g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := g.Run(graphCtx); err != nil {
					t.Errorf("node graph: %v", err)
				}
			}()
			cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(g))
		}})
	cl := c.Client(t)
	nc := nodeClientFor(t, c.API, nodeName)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	volumeDir := filepath.Join(t.TempDir(), "volumes")
	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime = nodeName, nc, e.Runtime
	cfg.PodCIDR, cfg.NodeIP = e.NetCfg.PodCIDR, netip.MustParseAddr(nodeIP)
	cfg.HeartbeatInterval, cfg.SyncInterval = time.Second, 300*time.Millisecond
	cfg.VolumeDir, cfg.VolumeGCInterval = volumeDir, 200*time.Millisecond
	cfg.Logger = testLogger()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	storeClusterNetwork(t, c.API, clusternet.Config{ClusterCIDR: "10.192.0.0/10", NodeCIDRMaskSize: 24})
	select {
	case <-a.Registered():
	case <-ctx.Done():
		t.Fatal("agent did not register")
	}
	if _, err := client.Patch[*apiv1.Node](ctx, cl, "", nodeName,
		[]byte(`{"spec":{"podCIDR":"`+e.NetCfg.PodCIDR+`","podCIDRs":["`+e.NetCfg.PodCIDR+`"]}}`)); err != nil {
		t.Fatalf("assign the pod range: %v", err)
	}
	n, err := client.Get[*apiv1.Node](ctx, cl, "", nodeName)
	if err != nil || n.GetMetadata().GetAnnotations()["skiff.io/local-volume-dir"] != volumeDir {
		t.Fatalf("node %s annotations %v (%v), want its volume directory %s", nodeName, n.GetMetadata().GetAnnotations(), err, volumeDir)
	}

	// What the node may not do with claims and volumes, through the API.
	other := &apiv1.PersistentVolumeClaim{ApiVersion: "v1", Kind: "PersistentVolumeClaim", Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "other"},
		Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"}, Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}}
	if _, err := client.Create(ctx, cl, other); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, nc, "default", "other"); !client.IsForbidden(err) {
		t.Errorf("node gets a claim no pod of it uses: %v, want forbidden", err)
	}
	if _, _, err := client.List[*apiv1.PersistentVolume](ctx, nc, client.ListOptions{}); !client.IsForbidden(err) {
		t.Errorf("node lists persistent volumes: %v, want forbidden", err)
	}
	stray := &apiv1.PersistentVolume{ApiVersion: "v1", Kind: "PersistentVolume", Metadata: &apiv1.ObjectMeta{Name: "stray"},
		Spec: &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			HostPath: &apiv1.HostPathVolumeSource{Path: "/"}}}
	if _, err := client.Create(ctx, nc, stray); !client.IsForbidden(err) {
		t.Errorf("node creates a persistent volume: %v, want forbidden", err)
	}

	// The first pod writes its uid; every pod copies what it finds there
	// to a file of its own.
	script := `if [ -f /data/first ]; then cp /data/first /data/read-by-$POD_UID; else echo $POD_UID > /data/first; fi; exec sleep 3600`
	one, grace := int32(1), int64(1)
	set := &apiv1.StatefulSet{ApiVersion: "apps/v1", Kind: "StatefulSet", Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "data"},
		Spec: &apiv1.StatefulSetSpec{Replicas: &one, ServiceName: "data",
			Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "data"}},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "data"}},
				Spec: &apiv1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []*apiv1.Container{{Name: "c", Image: img,
					Command:      []string{"sh", "-c", script},
					Env:          []*apiv1.EnvVar{{Name: "POD_UID", ValueFrom: &apiv1.EnvVarSource{FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}},
					VolumeMounts: []*apiv1.VolumeMount{{Name: "www", MountPath: "/data"}}}}}},
			VolumeClaimTemplates: []*apiv1.PersistentVolumeClaim{{Metadata: &apiv1.ObjectMeta{Name: "www"},
				Spec: &apiv1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
					Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"storage": "64Mi"}}}}}}}
	if _, err := client.Create(ctx, cl, set); err != nil {
		t.Fatal(err)
	}
	running := func(what string, not string) *apiv1.Pod {
		var pod *apiv1.Pod
		testutil.WaitFor(t, time.Minute, what, func() bool {
			p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "data-0")
			if err != nil || p.GetMetadata().GetUid() == not || p.GetStatus().GetPhase() != "Running" {
				return false
			}
			pod = p
			return true
		})
		return pod
	}
	first := running("pod data-0 Running on "+nodeName, "")
	claim, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", "www-data-0")
	if err != nil {
		t.Fatal(err)
	}
	pv, err := client.Get[*apiv1.PersistentVolume](ctx, cl, "", claim.GetSpec().GetVolumeName())
	if err != nil {
		t.Fatal(err)
	}
	dir := pv.GetSpec().GetLocal().GetPath()
	if filepath.Dir(dir) != volumeDir {
		t.Fatalf("provisioned volume at %s, want under %s", dir, volumeDir)
	}
	readFile := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	testutil.WaitFor(t, 30*time.Second, "the first pod's uid written into the volume", func() bool {
		return readFile("first") == first.GetMetadata().GetUid()
	})

	if _, _, err := cl.Delete(ctx, "Pod", "default", "data-0", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := running("replacement data-0 Running", first.GetMetadata().GetUid())
	testutil.WaitFor(t, 30*time.Second, "the replacement read what the first pod wrote", func() bool {
		return readFile("read-by-"+second.GetMetadata().GetUid()) == first.GetMetadata().GetUid()
	})
	if got := readFile("first"); got != first.GetMetadata().GetUid() {
		t.Errorf("first = %q after the replacement, want %q (the first pod's uid)", got, first.GetMetadata().GetUid())
	}

	// Deleting the set stops the pod and keeps the claim and its data.
	if _, _, err := cl.Delete(ctx, "StatefulSet", "default", "data", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "the set's pod gone", func() bool {
		_, err := client.Get[*apiv1.Pod](ctx, cl, "default", "data-0")
		return client.IsNotFound(err)
	})
	if _, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, cl, "default", "www-data-0"); err != nil {
		t.Errorf("claim after the set's deletion: %v", err)
	}
	if readFile("first") == "" {
		t.Error("volume data gone with the set")
	}

	// Deleting the claim deletes its volume (reclaim Delete), and the
	// agent removes the directory.
	if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", "default", "www-data-0", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "volume "+pv.GetMetadata().GetName()+" deleted and its directory removed", func() bool {
		_, err := client.Get[*apiv1.PersistentVolume](ctx, cl, "", pv.GetMetadata().GetName())
		_, statErr := os.Stat(dir)
		return client.IsNotFound(err) && os.IsNotExist(statErr)
	})
}
