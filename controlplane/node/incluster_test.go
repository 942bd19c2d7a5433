package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// A program in a pod, as ctl in a pod does it (client.Config with a
// token-file, no certificate): the control node's certificate verifies as
// kubernetes.default.svc against the CA alone (the name client-go checks
// through the kubernetes Service); the pod's service account is refused
// `get pods` before a RoleBinding to view, allowed after it in its own
// namespace, refused in another, refused writes; its token file is read
// again on every call. And who may write the kubernetes Service and its
// Endpoints: not a worker node, not a viewer, not the pod; the admin can.
func TestInClusterClientAndKubernetesServiceWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control node")
	}
	addr, adminConf, ca := oneControlNode(t)
	ctx := context.Background()
	admin := adminClient(t, adminConf, addr)
	for _, ns := range []string{"team-a", "team-b"} {
		mustCreate(t, admin, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: ns}})
	}
	pod := mustCreate(t, admin, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "reader"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox:1.36"}}}})
	// The admission gave it the token volume (this node mints tokens).
	found := false
	for _, v := range pod.GetSpec().GetVolumes() {
		found = found || v.GetProjected() != nil
	}
	if !found {
		t.Fatalf("pod without the service account volume: %v", pod.GetSpec().GetVolumes())
	}
	authzAdmin := apiv1.NewAuthorizationClient(dial(t, addr, certTLS(t, ca, pki.AdminIdentity()), ""))
	tok, err := authzAdmin.CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: "team-a", Pod: "reader", ExpirationSeconds: 3607})
	if err != nil {
		t.Fatal(err)
	}
	// The pod's service account directory, as the agent writes it.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok.GetToken()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &client.Config{Servers: []string{addr}, ServerName: "kubernetes.default.svc", CertificateAuthority: filepath.Join(dir, "ca.crt"),
		TokenFile: filepath.Join(dir, "token"), Namespace: "team-a"}
	inPod, err := client.NewFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inPod.Close() })
	listPods := func(ns string) error {
		_, _, err := client.List[*apiv1.Pod](ctx, inPod, client.ListOptions{Namespace: ns})
		return err
	}
	if err := listPods("team-a"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("pod's account lists pods before a RoleBinding: %v, want PermissionDenied", err)
	}
	mustCreate(t, admin, &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "default-view"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects: []*apiv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: "team-a"}}})
	testutil.WaitFor(t, 20*time.Second, "the RoleBinding to let the pod's account list pods", func() bool { return listPods("team-a") == nil })
	if err := listPods("team-b"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("pod's account lists pods in another namespace: %v, want PermissionDenied", err)
	}

	// Writers of the kubernetes Service and Endpoints.
	kube := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Spec: &apiv1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []*apiv1.ServicePort{{Name: "https", Port: 443, TargetPort: "https"}}}}
	eps := &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Subsets: []*apiv1.EndpointSubset{{Addresses: []*apiv1.EndpointAddress{{Ip: "192.0.2.66"}}, Ports: []*apiv1.EndpointPort{{Name: "https", Port: 7443}}}}}
	nodeID, _ := pki.NodeIdentity("w1")
	worker := clientOf(t, certTLS(t, ca, nodeID), addr)
	viewer := clientOf(t, certTLS(t, ca, userID(t, "vic", pki.RoleViewer)), addr)
	for name, c := range map[string]*client.Client{"worker node": worker, "viewer": viewer, "pod's account (view)": inPod} {
		if _, err := client.Create(ctx, c, kube); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s creates Service default/kubernetes: %v, want PermissionDenied", name, err)
		}
		if _, err := client.Create(ctx, c, eps); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s creates Endpoints default/kubernetes: %v, want PermissionDenied", name, err)
		}
	}
	mustCreate(t, admin, kube)
	cur := mustCreate(t, admin, eps)
	for name, c := range map[string]*client.Client{"worker node": worker, "viewer": viewer, "pod's account (view)": inPod} {
		cur.Subsets[0].Addresses[0].Ip = "192.0.2.67"
		if _, err := client.Update(ctx, c, cur); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s rewrites Endpoints default/kubernetes: %v, want PermissionDenied", name, err)
		}
		if _, _, err := c.Delete(ctx, "Service", "default", "kubernetes", client.DeleteOptions{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s deletes Service default/kubernetes: %v, want PermissionDenied", name, err)
		}
	}

	// The token file is read per call: a bad token is refused at once,
	// the good one works again.
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("not-a-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := listPods("team-a"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with a bad token in the file: %v, want Unauthenticated", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok.GetToken()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := listPods("team-a"); err != nil {
		t.Errorf("with the token back: %v", err)
	}
	// The token dies with its pod.
	zero := int64(0)
	if _, _, err := admin.Delete(ctx, "Pod", "team-a", "reader", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the deleted pod's token to be refused", func() bool {
		return status.Code(listPods("team-a")) == codes.Unauthenticated
	})
}
