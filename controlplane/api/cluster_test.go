package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startReady(t *testing.T, nodes int) *apitest.Cluster {
	t.Helper()
	c := apitest.Start(t, nodes, nil)
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

func ns(name string) *apiv1.Namespace {
	return &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: name}}
}

func pod(ns, name string, labels map[string]string) *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
}

func mustCreate[T client.Object](t *testing.T, c *client.Client, obj T) T {
	t.Helper()
	out, err := client.Create(ctxT(t, 20*time.Second), c, obj)
	if err != nil {
		t.Fatalf("create %s %s: %v", client.KindOf(obj), obj.GetMetadata().GetName(), err)
	}
	return out
}

// TestAPIOnThreeNodes runs the API's behaviours against a 3-node cluster,
// with the client talking to a follower unless said otherwise (writes are
// forwarded to the leader by the store).
func TestAPIOnThreeNodes(t *testing.T) {
	c := startReady(t, 3)
	f, err := c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.MustClient(t, f.Addr)
	all := c.MustClient(t)

	t.Run("ServerFieldsAndGeneration", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		mustCreate(t, cl, ns("gen"))
		d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Namespace: "gen", Name: "web"},
			Spec: &apiv1.DeploymentSpec{Replicas: ptr(int32(2)), Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "web", Image: "nginx"}}}}}}
		got := mustCreate(t, cl, d)
		md := got.GetMetadata()
		if md.GetUid() == "" || md.GetCreationTimestamp() == "" || md.GetGeneration() != 1 || md.GetResourceVersion() == "" {
			t.Fatalf("server fields not set: %+v", md)
		}
		if got.GetSpec().GetStrategy().GetType() != "RollingUpdate" {
			t.Fatalf("defaults not applied: strategy %v", got.GetSpec().GetStrategy())
		}
		// A metadata-only change keeps generation; a spec change bumps it.
		got.Metadata.Labels = map[string]string{"team": "a"}
		got, err := client.Update(ctx, cl, got)
		if err != nil || got.GetMetadata().GetGeneration() != 1 {
			t.Fatalf("label update: gen %d err %v", got.GetMetadata().GetGeneration(), err)
		}
		got.Spec.Replicas = ptr(int32(3))
		got, err = client.Update(ctx, cl, got)
		if err != nil || got.GetMetadata().GetGeneration() != 2 {
			t.Fatalf("spec update: gen %d err %v", got.GetMetadata().GetGeneration(), err)
		}
		// Update keeps the status; UpdateStatus changes only the status.
		got.Status = &apiv1.DeploymentStatus{Replicas: 3}
		st, err := client.UpdateStatus(ctx, cl, got)
		if err != nil || st.GetStatus().GetReplicas() != 3 || st.GetMetadata().GetGeneration() != 2 {
			t.Fatalf("status update: %v %v", st.GetStatus(), err)
		}
		st.Status = nil
		st.Spec.MinReadySeconds = 5
		up, err := client.Update(ctx, cl, st)
		if err != nil || up.GetStatus().GetReplicas() != 3 {
			t.Fatalf("update dropped status: %v %v", up.GetStatus(), err)
		}
	})

	t.Run("ConflictOnStaleResourceVersion", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		cm := mustCreate(t, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "cfg"}, Data: map[string]string{"a": "1"}})
		first := proto_clone(cm)
		cm.Data["a"] = "2"
		if _, err := client.Update(ctx, all, cm); err != nil {
			t.Fatal(err)
		}
		first.Data["a"] = "3"
		_, err := client.Update(ctx, cl, first)
		if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("stale update: want Aborted conflict, got %v", err)
		}
		// A patch pinned to the stale version conflicts too; unpinned it applies.
		_, err = client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "cfg",
			[]byte(fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"data":{"b":"x"}}`, first.GetMetadata().GetResourceVersion())))
		if !client.IsConflict(err) {
			t.Fatalf("pinned patch: want conflict, got %v", err)
		}
		p, err := client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "cfg", []byte(`{"data":{"b":"x","a":null}}`))
		if err != nil || p.Data["b"] != "x" || p.Data["a"] != "" {
			t.Fatalf("merge patch: %v %v", p.GetData(), err)
		}
		// Create of an existing name.
		if _, err := client.Create(ctx, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "cfg"}}); !client.IsAlreadyExists(err) {
			t.Fatalf("duplicate create: %v", err)
		}
		// Delete preconditions.
		_, _, err = cl.Delete(ctx, "configmap", "default", "cfg", client.DeleteOptions{ResourceVersion: first.GetMetadata().GetResourceVersion()})
		if !client.IsConflict(err) {
			t.Fatalf("delete with stale precondition: %v", err)
		}
	})

	t.Run("ValidationNamesFieldPath", func(t *testing.T) {
		ctx := ctxT(t, 20*time.Second)
		p := pod("default", "bad", nil)
		p.Spec.Containers[0].Ports = []*apiv1.ContainerPort{{ContainerPort: 70000}}
		_, err := client.Create(ctx, cl, p)
		if !client.IsInvalid(err) || !strings.Contains(err.Error(), "spec.containers[0].ports[0].containerPort: 70000") {
			t.Fatalf("want InvalidArgument naming the field, got %v", err)
		}
		_, err = client.Create(ctx, cl, pod("nowhere", "p", nil))
		if !client.IsNotFound(err) || !strings.Contains(err.Error(), `namespace "nowhere" not found`) {
			t.Fatalf("missing namespace: %v", err)
		}
	})

	t.Run("ListSelectorsAndPaging", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		mustCreate(t, cl, ns("list"))
		for i := 0; i < 7; i++ {
			tier := "front"
			if i%2 == 1 {
				tier = "back"
			}
			mustCreate(t, cl, pod("list", fmt.Sprintf("p%d", i), map[string]string{"app": "x", "tier": tier}))
		}
		pods, rv, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "list", LabelSelector: "tier=back"})
		if err != nil || len(pods) != 3 || rv == "" {
			t.Fatalf("label selector: %d pods, rv %q, %v", len(pods), rv, err)
		}
		pods, _, _ = client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "list", LabelSelector: "tier in (front),app", FieldSelector: "metadata.name!=p0"})
		if len(pods) != 3 {
			t.Fatalf("set selector + field selector: %d pods", len(pods))
		}
		var names []string
		req := &apiv1.ListRequest{Kind: "pods", Namespace: "list", Limit: 3}
		for page := 0; ; page++ {
			l, err := cl.API().List(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) > 3 {
				t.Fatalf("page of %d items", len(l.Items))
			}
			for _, it := range l.Items {
				o, _ := client.Unpack(it)
				names = append(names, o.GetMetadata().GetName())
			}
			if l.Metadata.Continue == "" {
				break
			}
			req.Continue = l.Metadata.Continue
		}
		if len(names) != 7 {
			t.Fatalf("paged list: %v", names)
		}
		if _, err := cl.API().List(ctx, &apiv1.ListRequest{Kind: "pods", LabelSelector: "a=(("}); !client.IsInvalid(err) {
			t.Fatalf("bad selector: %v", err)
		}
	})

	t.Run("GracefulPodDeletion", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		// Not bound to a node: removed at once.
		mustCreate(t, cl, pod("default", "unbound", nil))
		_, removed, err := cl.Delete(ctx, "pod", "default", "unbound", client.DeleteOptions{})
		if err != nil || !removed {
			t.Fatalf("unbound pod: removed=%v err=%v", removed, err)
		}
		// Bound: marked with deletionTimestamp + grace, stays until grace 0.
		p := pod("default", "bound", nil)
		p.Spec.NodeName = "node-1"
		p.Spec.TerminationGracePeriodSeconds = ptr(int64(45))
		mustCreate(t, cl, p)
		obj, removed, err := cl.Delete(ctx, "pod", "default", "bound", client.DeleteOptions{})
		if err != nil || removed {
			t.Fatalf("bound pod: removed=%v err=%v", removed, err)
		}
		md := obj.GetMetadata()
		if md.GetDeletionTimestamp() == "" || md.GetDeletionGracePeriodSeconds() != 45 {
			t.Fatalf("bound pod not marked: %+v", md)
		}
		// A shorter grace shortens it, a longer one does not lengthen it.
		obj, _, _ = cl.Delete(ctx, "pod", "default", "bound", client.DeleteOptions{GracePeriodSeconds: client.Int64(10)})
		if obj.GetMetadata().GetDeletionGracePeriodSeconds() != 10 {
			t.Fatalf("grace not shortened: %d", obj.GetMetadata().GetDeletionGracePeriodSeconds())
		}
		obj, _, _ = cl.Delete(ctx, "pod", "default", "bound", client.DeleteOptions{GracePeriodSeconds: client.Int64(60)})
		if obj.GetMetadata().GetDeletionGracePeriodSeconds() != 10 {
			t.Fatalf("grace lengthened: %d", obj.GetMetadata().GetDeletionGracePeriodSeconds())
		}
		if _, err := client.Get[*apiv1.Pod](ctx, cl, "default", "bound"); err != nil {
			t.Fatalf("pod gone before its node confirmed: %v", err)
		}
		// The node confirms with grace 0.
		_, removed, err = cl.Delete(ctx, "pod", "default", "bound", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)})
		if err != nil || !removed {
			t.Fatalf("grace 0: removed=%v err=%v", removed, err)
		}
		if _, err := client.Get[*apiv1.Pod](ctx, cl, "default", "bound"); !client.IsNotFound(err) {
			t.Fatalf("pod still there: %v", err)
		}
	})

	t.Run("FinalizersHoldDeletion", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "held", Finalizers: []string{"example.com/hold"}}}
		mustCreate(t, cl, cm)
		obj, removed, err := cl.Delete(ctx, "cm", "default", "held", client.DeleteOptions{})
		if err != nil || removed || obj.GetMetadata().GetDeletionTimestamp() == "" {
			t.Fatalf("finalized delete: removed=%v err=%v", removed, err)
		}
		if _, err := client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "held", []byte(`{"metadata":{"finalizers":["example.com/other"]}}`)); !client.IsInvalid(err) {
			t.Fatalf("adding a finalizer while deleting: %v", err)
		}
		if _, err := client.Patch[*apiv1.ConfigMap](ctx, cl, "default", "held", []byte(`{"metadata":{"finalizers":null}}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Get[*apiv1.ConfigMap](ctx, cl, "default", "held"); !client.IsNotFound(err) {
			t.Fatalf("object kept after its last finalizer went: %v", err)
		}
	})

	t.Run("CascadingDelete", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		mustCreate(t, cl, ns("cascade"))
		mkOwner := func(name string) *apiv1.ReplicaSet {
			return mustCreate(t, cl, &apiv1.ReplicaSet{Metadata: &apiv1.ObjectMeta{Namespace: "cascade", Name: name},
				Spec: &apiv1.ReplicaSetSpec{Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"rs": name}},
					Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"rs": name}},
						Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}}})
		}
		mkPods := func(owner *apiv1.ReplicaSet, n int) {
			for i := 0; i < n; i++ {
				p := pod("cascade", fmt.Sprintf("%s-%d", owner.Metadata.Name, i), map[string]string{"rs": owner.Metadata.Name})
				p.Metadata.OwnerReferences = []*apiv1.OwnerReference{{ApiVersion: "apps/v1", Kind: "ReplicaSet",
					Name: owner.Metadata.Name, Uid: owner.Metadata.Uid, Controller: ptr(true)}}
				mustCreate(t, cl, p)
			}
		}
		count := func(sel string) int {
			pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "cascade", LabelSelector: sel})
			if err != nil {
				t.Fatal(err)
			}
			return len(pods)
		}
		// Background: owner goes now, dependents after.
		bg := mkOwner("bg")
		mkPods(bg, 3)
		if _, removed, err := cl.Delete(ctx, "rs", "cascade", "bg", client.DeleteOptions{}); err != nil || !removed {
			t.Fatalf("background delete: %v %v", removed, err)
		}
		testutil.WaitFor(t, 20*time.Second, "background dependents removed", func() bool { return count("rs=bg") == 0 })

		// Foreground: owner waits (finalizer) until dependents are gone.
		fg := mkOwner("fg")
		mkPods(fg, 2)
		obj, removed, err := cl.Delete(ctx, "rs", "cascade", "fg", client.DeleteOptions{PropagationPolicy: "Foreground"})
		if err != nil || removed || !contains(obj.GetMetadata().GetFinalizers(), "foregroundDeletion") {
			t.Fatalf("foreground delete: removed=%v finalizers=%v err=%v", removed, obj.GetMetadata().GetFinalizers(), err)
		}
		testutil.WaitFor(t, 20*time.Second, "foreground owner removed after its dependents", func() bool {
			_, err := client.Get[*apiv1.ReplicaSet](ctx, cl, "cascade", "fg")
			return client.IsNotFound(err) && count("rs=fg") == 0
		})

		// Orphan: dependents stay, without the ownerReference.
		or := mkOwner("or")
		mkPods(or, 2)
		if _, _, err := cl.Delete(ctx, "rs", "cascade", "or", client.DeleteOptions{PropagationPolicy: "Orphan"}); err != nil {
			t.Fatal(err)
		}
		pods, _, _ := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "cascade", LabelSelector: "rs=or"})
		if len(pods) != 2 {
			t.Fatalf("orphaned pods: %d", len(pods))
		}
		for _, p := range pods {
			if len(p.GetMetadata().GetOwnerReferences()) != 0 {
				t.Fatalf("orphan kept ownerReferences: %v", p.GetMetadata().GetOwnerReferences())
			}
		}
	})

	t.Run("QuotaRejectionAndLimitRangeDefaults", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		mustCreate(t, cl, ns("quota"))
		mustCreate(t, cl, &apiv1.LimitRange{Metadata: &apiv1.ObjectMeta{Namespace: "quota", Name: "limits"},
			Spec: &apiv1.LimitRangeSpec{Limits: []*apiv1.LimitRangeItem{{Type: "Container",
				Default: map[string]string{"cpu": "200m", "memory": "64Mi"}, DefaultRequest: map[string]string{"cpu": "100m", "memory": "32Mi"},
				Max: map[string]string{"cpu": "1"}}}}})
		q := mustCreate(t, cl, &apiv1.ResourceQuota{Metadata: &apiv1.ObjectMeta{Namespace: "quota", Name: "compute"},
			Spec: &apiv1.ResourceQuotaSpec{Hard: map[string]string{"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}}})
		if q.GetStatus().GetUsed()["pods"] != "0" {
			t.Fatalf("new quota used: %v", q.GetStatus().GetUsed())
		}
		p1 := mustCreate(t, cl, pod("quota", "p1", nil))
		if r := p1.Spec.Containers[0].GetResources(); r.GetLimits()["cpu"] != "200m" || r.GetRequests()["memory"] != "32Mi" {
			t.Fatalf("LimitRange defaults not applied: %v", r)
		}
		big := pod("quota", "big", nil)
		big.Spec.Containers[0].Resources = &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "2"}}
		if _, err := client.Create(ctx, cl, big); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "maximum cpu usage per Container is 1") {
			t.Fatalf("LimitRange max: %v", err)
		}
		mustCreate(t, cl, pod("quota", "p2", nil))
		_, err := client.Create(ctx, cl, pod("quota", "p3", nil))
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "exceeded quota: compute") || !strings.Contains(err.Error(), "limited: pods=2") {
			t.Fatalf("quota: want ResourceExhausted exceeded quota, got %v", err)
		}
		q, _ = client.Get[*apiv1.ResourceQuota](ctx, cl, "quota", "compute")
		if u := q.GetStatus().GetUsed(); u["pods"] != "2" || u["requests.cpu"] != "200m" || u["limits.memory"] != "128Mi" {
			t.Fatalf("quota used after 2 pods: %v", u)
		}
		// Deleting a pod frees its share in the same write.
		if _, _, err := cl.Delete(ctx, "pod", "quota", "p1", client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, cl, pod("quota", "p3", nil))
	})

	t.Run("NamespaceTermination", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		mustCreate(t, cl, ns("doomed"))
		mustCreate(t, cl, pod("doomed", "a", nil))
		mustCreate(t, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "doomed", Name: "c"}})
		obj, removed, err := cl.Delete(ctx, "ns", "", "doomed", client.DeleteOptions{})
		if err != nil || removed || obj.(*apiv1.Namespace).GetStatus().GetPhase() != "Terminating" {
			t.Fatalf("namespace delete: %v %v %v", obj, removed, err)
		}
		if _, err := client.Create(ctx, cl, pod("doomed", "b", nil)); err != nil && status.Code(err) != codes.FailedPrecondition && !client.IsNotFound(err) {
			t.Fatalf("create in terminating namespace: %v", err)
		} else if err == nil {
			t.Fatal("create in terminating namespace succeeded")
		}
		testutil.WaitFor(t, 30*time.Second, "namespace and its contents removed", func() bool {
			_, err := client.Get[*apiv1.Namespace](ctx, cl, "", "doomed")
			return client.IsNotFound(err)
		})
	})

	t.Run("ApplyCreatedConfiguredUnchanged", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		svc := func(port int32, extraLabel bool) *apiv1.Service {
			s := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}},
				Spec: &apiv1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []*apiv1.ServicePort{{Port: port, TargetPort: "80"}}}}
			if extraLabel {
				s.Metadata.Labels["tier"] = "front"
			}
			return s
		}
		_, res, err := cl.Apply(ctx, svc(80, true))
		if err != nil || res != apiv1.ApplyResponse_CREATED {
			t.Fatalf("first apply: %v %v", res, err)
		}
		_, res, err = cl.Apply(ctx, svc(80, true))
		if err != nil || res != apiv1.ApplyResponse_UNCHANGED {
			t.Fatalf("same apply: %v %v", res, err)
		}
		// Someone else sets a field and the status; apply keeps them.
		if _, err := client.Patch[*apiv1.Service](ctx, cl, "default", "web", []byte(`{"metadata":{"annotations":{"other":"x"}},"spec":{"clusterIP":"10.96.0.20"}}`)); err != nil {
			t.Fatal(err)
		}
		out, res, err := cl.Apply(ctx, svc(8080, false))
		if err != nil || res != apiv1.ApplyResponse_CONFIGURED {
			t.Fatalf("changed apply: %v %v", res, err)
		}
		s := out.(*apiv1.Service)
		if s.Spec.Ports[0].Port != 8080 || s.Metadata.Labels["tier"] != "" || s.Metadata.Annotations["other"] != "x" || s.Spec.ClusterIP != "10.96.0.20" {
			t.Fatalf("three-way merge: ports %v labels %v annotations %v clusterIP %q", s.Spec.Ports, s.Metadata.Labels, s.Metadata.Annotations, s.Spec.ClusterIP)
		}
	})

	t.Run("EventsRecorder", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		p := mustCreate(t, cl, pod("default", "evented", nil))
		r := client.NewRecorder(cl, "test", "host-1")
		for i := 0; i < 3; i++ {
			if err := r.Event(ctx, p, client.EventWarning, "BackOff", "restarting failed container"); err != nil {
				t.Fatal(err)
			}
		}
		evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "default", FieldSelector: "involvedObject.name=evented,involvedObject.kind=Pod"})
		if err != nil || len(evs) != 1 || evs[0].Count != 3 {
			t.Fatalf("events: %v %v", evs, err)
		}
	})

	t.Run("ReflectionAndHealth", func(t *testing.T) {
		// The reflection client API directly (what grpcurl uses), so the test
		// needs no tool download.
		ctx := ctxT(t, 20*time.Second)
		tc, err := c.ClientTLS("admin")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(f.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, want := range []string{"skiff.api.v1.API", "grpc.health.v1.Health"} {
			if !contains(names, want) {
				t.Fatalf("reflection lists %v, missing %s", names, want)
			}
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "skiff.api.v1.API"}}); err != nil {
			t.Fatal(err)
		}
		if resp, err = stream.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Fatalf("descriptor of skiff.api.v1.API: %v %v", resp, err)
		}
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }
