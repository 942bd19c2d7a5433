package hpa_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/hpa"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func i32(v int32) *int32 { return &v }

func TestDesired(t *testing.T) {
	cases := []struct {
		current     int32
		u           hpa.Usage
		target      int32
		want, util  int32
		description string
	}{
		{2, hpa.Usage{Pods: 2, UsageMilli: 400, Request: 200}, 50, 8, 200, "4x the target: 4x the pods"},
		{4, hpa.Usage{Pods: 4, UsageMilli: 210, Request: 400}, 50, 4, 52, "within 10%: no change"},
		{4, hpa.Usage{Pods: 4, UsageMilli: 40, Request: 400}, 50, 1, 10, "a fifth of the target"},
		{3, hpa.Usage{}, 50, 3, 0, "no metrics: no change"},
	}
	for _, tc := range cases {
		got, util := hpa.Desired(tc.current, tc.u, tc.target)
		if got != tc.want || util != tc.util {
			t.Errorf("%s: desired %d util %d, want %d %d", tc.description, got, util, tc.want, tc.util)
		}
	}
	if _, err := hpa.MeasureCPU([]*apiv1.Pod{{Metadata: &apiv1.ObjectMeta{Name: "p"},
		Spec:   &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c"}}},
		Status: &apiv1.PodStatus{Metrics: &apiv1.PodMetrics{Usage: map[string]string{"cpu": "100m"}}}}}); err == nil {
		t.Fatal("a pod without a cpu request must be an error naming it")
	}
}

func setCPU(e *ctrltest.Env, ctx context.Context, usage string) {
	e.T.Helper()
	for _, p := range e.ActivePods("default", "app=api") {
		next := proto.Clone(p).(*apiv1.Pod)
		if next.Status == nil {
			continue
		}
		next.Status.Metrics = &apiv1.PodMetrics{Timestamp: time.Now().UTC().Format(time.RFC3339), Window: "15s", Usage: map[string]string{"cpu": usage}}
		if _, err := client.UpdateStatus(ctx, e.Client, next); err != nil && !client.IsConflict(err) && !client.IsNotFound(err) {
			e.T.Fatal(err)
		}
	}
}

// setNodeCPU publishes usage for every active pod as an agent does: the
// pods run on node n1 (bound there), whose NodeMetrics lists them.
func setNodeCPU(e *ctrltest.Env, ctx context.Context, usage string) {
	e.T.Helper()
	if _, err := client.Create(ctx, e.Client, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "n1"}}); err != nil && !client.IsAlreadyExists(err) {
		e.T.Fatal(err)
	}
	m := &apiv1.NodeMetrics{Metadata: &apiv1.ObjectMeta{Name: "n1"}, Timestamp: time.Now().UTC().Format(time.RFC3339), Window: "15s",
		Usage: map[string]string{"cpu": "1", "memory": "1Gi"}}
	var bind []*apiv1.Binding
	for _, p := range e.ActivePods("default", "app=api") {
		md := p.GetMetadata()
		if p.GetSpec().GetNodeName() == "" {
			bind = append(bind, &apiv1.Binding{Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid(), NodeName: "n1"})
		}
		m.Pods = append(m.Pods, &apiv1.PodUsage{Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid(),
			Usage: map[string]string{"cpu": usage, "memory": "10Mi"}})
	}
	if len(bind) > 0 {
		if _, err := client.Bind(ctx, e.Client, bind); err != nil {
			e.T.Fatal(err)
		}
	}
	if _, err := client.Update(ctx, e.Client, m); client.IsNotFound(err) {
		_, err = client.Create(ctx, e.Client, m)
		if err != nil && !client.IsAlreadyExists(err) {
			e.T.Fatal(err)
		}
	} else if err != nil {
		e.T.Fatal(err)
	}
}

func cond(h *apiv1.HorizontalPodAutoscaler, typ string) *apiv1.HorizontalPodAutoscalerCondition {
	for _, c := range h.GetStatus().GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

// TestHPAScalesReplicaSetOnCPU: without metrics the HPA says so and leaves
// the target alone; with pods at 4x the target (status.metrics) it scales
// up to maxReplicas; with low usage in their node's NodeMetrics (what the
// agents write) it scales down to minReplicas.
func TestHPAScalesReplicaSetOnCPU(t *testing.T) {
	e := ctrltest.Start(t)
	e.StartKubelet()
	cfg := ctrlkit.DefaultConfig(e.Client)
	cfg.Resync = 200 * time.Millisecond
	e.Run(replicaset.NewReplicaSet(cfg), hpa.New(cfg))
	ctx := e.Ctx(60 * time.Second)
	l := map[string]string{"app": "api"}
	rs := &apiv1.ReplicaSet{Metadata: &apiv1.ObjectMeta{Name: "api", Namespace: "default"},
		Spec: &apiv1.ReplicaSetSpec{Replicas: i32(2), Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l}, Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{
				Name: "c", Image: "api", Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "100m"}}}}}}}}
	if _, err := client.Create(ctx, e.Client, rs); err != nil {
		t.Fatal(err)
	}
	zero := int32(0)
	h := &apiv1.HorizontalPodAutoscaler{Metadata: &apiv1.ObjectMeta{Name: "api", Namespace: "default"},
		Spec: &apiv1.HorizontalPodAutoscalerSpec{ScaleTargetRef: &apiv1.CrossVersionObjectReference{Kind: "ReplicaSet", Name: "api", ApiVersion: "apps/v1"},
			MinReplicas: i32(1), MaxReplicas: 5,
			Metrics: []*apiv1.MetricSpec{{Type: "Resource", Resource: &apiv1.ResourceMetricSource{Name: "cpu",
				Target: &apiv1.MetricTarget{Type: "Utilization", AverageUtilization: i32(50)}}}},
			Behavior: &apiv1.HorizontalPodAutoscalerBehavior{ScaleDown: &apiv1.HPAScalingRules{StabilizationWindowSeconds: &zero}}}}
	if _, err := client.Create(ctx, e.Client, h); err != nil {
		t.Fatal(err)
	}
	getH := func() *apiv1.HorizontalPodAutoscaler {
		cur, err := client.Get[*apiv1.HorizontalPodAutoscaler](ctx, e.Client, "default", "api")
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	replicas := func() int32 {
		cur, err := client.Get[*apiv1.ReplicaSet](ctx, e.Client, "default", "api")
		if err != nil {
			t.Fatal(err)
		}
		return cur.GetSpec().GetReplicas()
	}
	testutil.WaitFor(t, 10*time.Second, "ScalingActive=False FailedGetResourceMetric without metrics", func() bool {
		c := cond(getH(), hpa.CondScalingActive)
		return c != nil && c.GetStatus() == "False" && c.GetReason() == hpa.ReasonNoMetrics
	})
	if n := replicas(); n != 2 {
		t.Fatalf("HPA without metrics changed replicas to %d", n)
	}
	testutil.WaitFor(t, 10*time.Second, "2 running pods", func() bool {
		n := 0
		for _, p := range e.ActivePods("default", "app=api") {
			if p.GetStatus().GetPhase() == "Running" {
				n++
			}
		}
		return n == 2
	})
	setCPU(e, ctx, "200m") // 200% of request, target 50%
	testutil.WaitFor(t, 10*time.Second, "scaled up to maxReplicas 5", func() bool {
		c := cond(getH(), hpa.CondScalingLimited)
		return replicas() == 5 && c.GetReason() == hpa.ReasonTooMany && getH().GetStatus().GetCurrentMetrics()[0].GetResource().GetCurrent().GetAverageUtilization() == 200
	})
	testutil.WaitFor(t, 10*time.Second, "5 running pods", func() bool { return len(e.ActivePods("default", "app=api")) == 5 })
	// The agents' NodeMetrics take precedence over status.metrics (still
	// 200m on the pods): low usage there scales down.
	testutil.WaitFor(t, 10*time.Second, "low usage in the node's NodeMetrics, scaled down to 1", func() bool {
		setNodeCPU(e, ctx, "5m")
		return replicas() == 1
	})
	if getH().GetStatus().GetLastScaleTime() == "" {
		t.Fatal("lastScaleTime not set")
	}
}
