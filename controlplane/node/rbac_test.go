package node

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// oneControlNode runs `ctl init` and returns the API address, the admin
// client config and the CA.
func oneControlNode(t *testing.T) (addr, adminConf string, ca *pki.CA) {
	t.Helper()
	cfg, out := testConfig(t, filepath.Join(t.TempDir(), "c1"), "c1")
	// No controllers, only what the node adds itself (the RBAC loop).
	cfg.Loops = func(LoopDeps) ([]controlplane.Loop, error) { return nil, nil }
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	re := regexp.MustCompile(`(?s)export SKIFF_CONFIG=(\S+).*ctl join --control --token (\S+) (\S+)`)
	var m []string
	testutil.WaitFor(t, 30*time.Second, "init to print the join commands", func() bool {
		m = re.FindStringSubmatch(out.String())
		return m != nil
	})
	ca, err := pki.LoadCA(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	return m[3], m[1], ca
}

// certTLS is a client TLS config with a certificate the cluster CA issued
// for id.
func certTLS(t *testing.T, ca *pki.CA, id pki.Identity) *tls.Config {
	t.Helper()
	kp, _, err := ca.Issue(pki.IssueOptions{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
}

func userID(t *testing.T, name string, role pki.Role) pki.Identity {
	t.Helper()
	id, err := pki.UserIdentity(name, role)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerToken) RequireTransportSecurity() bool { return true }

// dial connects to addr with tc; a non-empty token is sent as a bearer
// token on every call (a pod's program: no certificate).
func dial(t *testing.T, addr string, tc *tls.Config, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestRBACThroughTheAPI decides a table of (subject, verb, resource)
// through a real control node's API port with real certificates and a
// real service account token: a user bound by one RoleBinding in one
// namespace, a group binding, an aggregated ClusterRole (filled by the
// leader), the built-in bindings of admins and viewers, a worker node
// (node authorizer in front), and a pod's token — refused for another
// audience, without a token, and once its pod is deleted.
func TestRBACThroughTheAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control node")
	}
	addr, adminConf, ca := oneControlNode(t)
	ctx := context.Background()
	admin := adminClient(t, adminConf, addr)
	for _, ns := range []string{"team-a", "team-b"} {
		mustCreate(t, admin, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: ns}})
	}
	rbacGroup := "rbac.authorization.k8s.io"
	mustCreate(t, admin, &apiv1.Role{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "pod-reader"},
		Rules: []*apiv1.PolicyRule{{Verbs: []string{"get", "list", "watch"}, ApiGroups: []string{""}, Resources: []string{"pods", "pods/log"}}}})
	mustCreate(t, admin, &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "carol-reads-pods"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "Role", Name: "pod-reader"},
		Subjects: []*apiv1.Subject{{Kind: "User", ApiGroup: rbacGroup, Name: "user:carol"}}})
	mustCreate(t, admin, &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: "team-b", Name: "users-edit"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "ClusterRole", Name: "edit"},
		Subjects: []*apiv1.Subject{{Kind: "Group", ApiGroup: rbacGroup, Name: pki.GroupUsers}}})
	mustCreate(t, admin, &apiv1.ClusterRole{Metadata: &apiv1.ObjectMeta{Name: "monitoring"},
		AggregationRule: &apiv1.AggregationRule{ClusterRoleSelectors: []*apiv1.LabelSelector{{MatchLabels: map[string]string{"example.com/aggregate-to-monitoring": "true"}}}}})
	mustCreate(t, admin, &apiv1.ClusterRole{Metadata: &apiv1.ObjectMeta{Name: "monitoring-endpoints", Labels: map[string]string{"example.com/aggregate-to-monitoring": "true"}},
		Rules: []*apiv1.PolicyRule{{Verbs: []string{"get", "list", "watch"}, ApiGroups: []string{""}, Resources: []string{"endpoints", "services"}}}})
	mustCreate(t, admin, &apiv1.ClusterRoleBinding{Metadata: &apiv1.ObjectMeta{Name: "erin-monitors"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "ClusterRole", Name: "monitoring"},
		Subjects: []*apiv1.Subject{{Kind: "User", ApiGroup: rbacGroup, Name: "user:erin"}}})
	mustCreate(t, admin, &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "robot-edits"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "ClusterRole", Name: "edit"},
		Subjects: []*apiv1.Subject{{Kind: "ServiceAccount", Name: "robot", Namespace: "team-a"}}})
	mustCreate(t, admin, &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "frank-admin"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "ClusterRole", Name: "admin"},
		Subjects: []*apiv1.Subject{{Kind: "User", ApiGroup: rbacGroup, Name: "user:frank"}}})
	mustCreate(t, admin, &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "db"}, Data: map[string][]byte{"k": []byte("v")}})
	mustCreate(t, admin, &apiv1.ServiceAccount{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "robot"}})
	pod := mustCreate(t, admin, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "team-a", Name: "bot"},
		Spec: &apiv1.PodSpec{ServiceAccountName: "robot", Containers: []*apiv1.Container{{Name: "c", Image: "busybox:1.36"}}}})

	// The pod's token, as its node's agent gets it (admin here: the pod is
	// not bound to a node).
	authzAdmin := apiv1.NewAuthorizationClient(dial(t, addr, certTLS(t, ca, pki.AdminIdentity()), ""))
	tokResp, err := authzAdmin.CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: "team-a", Pod: "bot"})
	if err != nil {
		t.Fatalf("CreatePodToken as admin: %v", err)
	}
	otherAud, err := authzAdmin.CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: "team-a", Pod: "bot", Audience: "vault"})
	if err != nil {
		t.Fatalf("CreatePodToken for audience vault: %v", err)
	}
	noCert := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
	robot := apiv1.NewAPIClient(dial(t, addr, noCert, tokResp.GetToken()))
	// A pod of team-b's default account, which nothing binds.
	mustCreate(t, admin, &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "team-b", Name: "plain"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox:1.36"}}}})
	plainTok, err := authzAdmin.CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: "team-b", Pod: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	plain := apiv1.NewAPIClient(dial(t, addr, noCert, plainTok.GetToken()))
	createKubernetes := func(c apiv1.APIClient, obj client.Object) func(context.Context) error {
		return func(ctx context.Context) error {
			env, err := client.Pack(obj)
			if err != nil {
				return err
			}
			_, err = c.Create(ctx, &apiv1.CreateRequest{Object: env})
			return err
		}
	}
	kubeSvc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Spec: &apiv1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []*apiv1.ServicePort{{Name: "https", Port: 443}}}}
	kubeEps := &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Subsets: []*apiv1.EndpointSubset{{Addresses: []*apiv1.EndpointAddress{{Ip: "192.0.2.66"}}, Ports: []*apiv1.EndpointPort{{Name: "https", Port: 7443}}}}}

	type call func(context.Context) error
	apiOf := func(tc *tls.Config) apiv1.APIClient { return apiv1.NewAPIClient(dial(t, addr, tc, "")) }
	list := func(c apiv1.APIClient, kind, ns string) call {
		return func(ctx context.Context) error {
			_, err := c.List(ctx, &apiv1.ListRequest{Kind: kind, Namespace: ns})
			return err
		}
	}
	get := func(c apiv1.APIClient, kind, ns, name string) call {
		return func(ctx context.Context) error {
			_, err := c.Get(ctx, &apiv1.GetRequest{Kind: kind, Namespace: ns, Name: name})
			if status.Code(err) == codes.NotFound {
				return nil // allowed, just absent
			}
			return err
		}
	}
	create := func(c apiv1.APIClient, ns, name string) call {
		return func(ctx context.Context) error {
			env, err := client.Pack(&apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"a": "b"}})
			if err != nil {
				return err
			}
			_, err = c.Create(ctx, &apiv1.CreateRequest{Object: env})
			return err
		}
	}
	createRole := func(c apiv1.APIClient, ns string) call {
		return func(ctx context.Context) error {
			env, err := client.Pack(&apiv1.Role{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "escalate"},
				Rules: []*apiv1.PolicyRule{{Verbs: []string{"*"}, ApiGroups: []string{"*"}, Resources: []string{"*"}}}})
			if err != nil {
				return err
			}
			_, err = c.Create(ctx, &apiv1.CreateRequest{Object: env})
			return err
		}
	}
	createRoleWith := func(c apiv1.APIClient, ns, name string, verbs []string, resource string) call {
		return func(ctx context.Context) error {
			env, err := client.Pack(&apiv1.Role{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name},
				Rules: []*apiv1.PolicyRule{{Verbs: verbs, ApiGroups: []string{""}, Resources: []string{resource}}}})
			if err != nil {
				return err
			}
			_, err = c.Create(ctx, &apiv1.CreateRequest{Object: env})
			return err
		}
	}
	bindClusterAdmin := func(c apiv1.APIClient, ns string) call {
		return func(ctx context.Context) error {
			env, err := client.Pack(&apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "root"},
				RoleRef:  &apiv1.RoleRef{ApiGroup: rbacGroup, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects: []*apiv1.Subject{{Kind: "User", ApiGroup: rbacGroup, Name: "user:frank"}}})
			if err != nil {
				return err
			}
			_, err = c.Create(ctx, &apiv1.CreateRequest{Object: env})
			return err
		}
	}
	frank := apiOf(certTLS(t, ca, userID(t, "frank", pki.RoleUser)))
	carol := apiOf(certTLS(t, ca, userID(t, "carol", pki.RoleUser)))
	dave := apiOf(certTLS(t, ca, userID(t, "dave", pki.RoleUser)))
	erin := apiOf(certTLS(t, ca, userID(t, "erin", pki.RoleUser)))
	viewer := apiOf(certTLS(t, ca, userID(t, "vic", pki.RoleViewer)))
	alice := apiOf(certTLS(t, ca, userID(t, "alice", pki.RoleAdmin)))
	nodeID, _ := pki.NodeIdentity("w1")
	worker := apiOf(certTLS(t, ca, nodeID))

	rows := []struct {
		what string
		do   call
		want codes.Code
	}{
		{"carol (RoleBinding in team-a) lists pods in team-a", list(carol, "Pod", "team-a"), codes.OK},
		{"carol gets a pod in team-a", get(carol, "Pod", "team-a", "bot"), codes.OK},
		{"carol lists pods in all namespaces", list(carol, "Pod", ""), codes.PermissionDenied},
		{"carol reads secrets in team-a", get(carol, "Secret", "team-a", "db"), codes.PermissionDenied},
		{"carol creates a configmap in team-a", create(carol, "team-a", "c1"), codes.PermissionDenied},
		{"carol (group skiff:users → edit in team-b) creates in team-b", create(carol, "team-b", "c1"), codes.OK},
		{"dave (group binding only) creates in team-b", create(dave, "team-b", "d1"), codes.OK},
		{"dave lists pods in team-a", list(dave, "Pod", "team-a"), codes.PermissionDenied},
		{"dave lists nodes", list(dave, "Node", ""), codes.PermissionDenied},
		{"erin (aggregated ClusterRole) lists endpoints everywhere", list(erin, "Endpoints", ""), codes.OK},
		{"erin gets a service in team-b", get(erin, "Service", "team-b", "x"), codes.OK},
		{"erin lists pods", list(erin, "Pod", "team-a"), codes.PermissionDenied},
		{"viewer (skiff:viewers → view) lists pods", list(viewer, "Pod", ""), codes.OK},
		{"viewer lists nodes", list(viewer, "Node", ""), codes.OK},
		{"viewer reads a secret", get(viewer, "Secret", "team-a", "db"), codes.PermissionDenied},
		{"viewer creates", create(viewer, "team-a", "v1"), codes.PermissionDenied},
		{"viewer lists roles", list(viewer, "Role", ""), codes.OK},
		{"admin user (skiff:admins → cluster-admin) reads a secret", get(alice, "Secret", "team-a", "db"), codes.OK},
		{"admin user creates", create(alice, "team-a", "a1"), codes.OK},
		{"worker node lists secrets (node authorizer)", list(worker, "Secret", ""), codes.PermissionDenied},
		{"worker node lists pods", list(worker, "Pod", ""), codes.OK},
		{"service account token (edit in team-a) lists pods in team-a", list(robot, "Pod", "team-a"), codes.OK},
		{"service account token creates a configmap in team-a", create(robot, "team-a", "r1"), codes.OK},
		{"service account token reads secrets in team-a (edit)", get(robot, "Secret", "team-a", "db"), codes.OK},
		{"service account token lists pods in team-b", list(robot, "Pod", "team-b"), codes.PermissionDenied},
		{"service account token (edit) creates a Role in team-a", createRole(robot, "team-a"), codes.PermissionDenied},
		{"admin user creates a Role in team-a", createRole(alice, "team-a"), codes.OK},
		{"frank (namespace admin) creates a Role granting only what he holds", createRoleWith(frank, "team-a", "readers", []string{"get", "list"}, "pods"), codes.OK},
		{"frank creates a Role granting * (escalation)", createRoleWith(frank, "team-a", "all", []string{"*"}, "*"), codes.PermissionDenied},
		{"frank binds himself to cluster-admin in team-a (escalation)", bindClusterAdmin(frank, "team-a"), codes.PermissionDenied},
		{"admin user binds cluster-admin in team-b", bindClusterAdmin(alice, "team-b"), codes.OK},
		{"service account token without a RoleBinding lists pods in its namespace", list(plain, "Pod", "team-b"), codes.PermissionDenied},
		{"worker node creates Service default/kubernetes", createKubernetes(worker, kubeSvc), codes.PermissionDenied},
		{"worker node creates Endpoints default/kubernetes", createKubernetes(worker, kubeEps), codes.PermissionDenied},
		{"viewer creates Service default/kubernetes", createKubernetes(viewer, kubeSvc), codes.PermissionDenied},
		{"viewer creates Endpoints default/kubernetes", createKubernetes(viewer, kubeEps), codes.PermissionDenied},
		{"token for audience vault", list(apiv1.NewAPIClient(dial(t, addr, noCert, otherAud.GetToken())), "Pod", "team-a"), codes.Unauthenticated},
		{"no certificate and no token", list(apiv1.NewAPIClient(dial(t, addr, noCert, "")), "Pod", "team-a"), codes.Unauthenticated},
		{"a forged token", list(apiv1.NewAPIClient(dial(t, addr, noCert, tokResp.GetToken()[:len(tokResp.GetToken())-4]+"AAAA")), "Pod", "team-a"), codes.Unauthenticated},
	}
	// The aggregated role is filled by the leader: wait for its rules.
	testutil.WaitFor(t, 30*time.Second, "the leader to aggregate ClusterRole monitoring", func() bool {
		err := list(erin, "Endpoints", "")(ctx)
		if err != nil {
			crs, _, lerr := client.List[*apiv1.ClusterRole](ctx, admin, client.ListOptions{})
			t.Logf("erin: %v; cluster roles %d %v", err, len(crs), lerr)
		}
		return status.Code(err) == codes.OK
	})
	allowed, denied := 0, 0
	for _, r := range rows {
		err := r.do(ctx)
		if got := status.Code(err); got != r.want {
			t.Errorf("%s: got %v (%v), want %v", r.what, got, err, r.want)
		}
		if status.Code(err) == codes.OK {
			allowed++
		} else {
			denied++
		}
	}
	t.Logf("rbac table: rows=%d allowed=%d refused=%d", len(rows), allowed, denied)

	// Access reviews (ctl auth can-i).
	carolAuthz := apiv1.NewAuthorizationClient(dial(t, addr, certTLS(t, ca, userID(t, "carol", pki.RoleUser)), ""))
	rev, err := carolAuthz.AccessReview(ctx, &apiv1.AccessReviewRequest{Verb: "get", Resource: "pods/log", Namespace: "team-a"})
	if err != nil || !rev.GetAllowed() {
		t.Errorf("carol can-i get pods/log -n team-a: %v %v, want allowed", rev, err)
	}
	rev, err = carolAuthz.AccessReview(ctx, &apiv1.AccessReviewRequest{Verb: "create", Resource: "pods/exec", Namespace: "team-a"})
	if err != nil || rev.GetAllowed() {
		t.Errorf("carol can-i create pods/exec -n team-a: %v %v, want refused", rev, err)
	}
	if _, err := carolAuthz.AccessReview(ctx, &apiv1.AccessReviewRequest{Verb: "get", Resource: "secrets", Namespace: "team-a", User: "admin"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("carol --as admin: %v, want PermissionDenied", err)
	}
	rev, err = authzAdmin.AccessReview(ctx, &apiv1.AccessReviewRequest{Verb: "create", Resource: "configmaps", Namespace: "team-b", User: "user:dave", Groups: []string{pki.GroupUsers}})
	if err != nil || !rev.GetAllowed() {
		t.Errorf("admin --as user:dave --as-group skiff:users can-i create configmaps -n team-b: %v %v, want allowed", rev, err)
	}

	// Who may mint tokens: not a viewer, not a node the pod is not bound to.
	for name, tc := range map[string]*tls.Config{"viewer": certTLS(t, ca, userID(t, "vic", pki.RoleViewer)), "node w1": certTLS(t, ca, nodeID)} {
		_, err := apiv1.NewAuthorizationClient(dial(t, addr, tc, "")).CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: "team-a", Pod: "bot"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s CreatePodToken: %v, want PermissionDenied", name, err)
		}
	}

	// Existence is not told to who may not see it: every refused identity
	// gets the same answer (PermissionDenied, the same words) for an object
	// that exists and for one that does not — authorization is decided
	// before the object is read, as Kubernetes does.
	mustCreate(t, admin, &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: "team-b", Name: "keys"}, Data: map[string][]byte{"k": []byte("v")}})
	hostPath := &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: "pv-static"},
		Spec: &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/static"}}}
	mustCreate(t, admin, hostPath)
	conn := func(tc *tls.Config, token string) (apiv1.APIClient, streamv1.PodStreamsClient) {
		cc := dial(t, addr, tc, token)
		return apiv1.NewAPIClient(cc), streamv1.NewPodStreamsClient(cc)
	}
	viewerAPI, _ := conn(certTLS(t, ca, userID(t, "vic", pki.RoleViewer)), "")
	workerAPI, _ := conn(certTLS(t, ca, nodeID), "")
	plainAPI, plainStreams := conn(noCert, plainTok.GetToken())
	robotAPI, _ := conn(noCert, tokResp.GetToken())
	getOf := func(c apiv1.APIClient, kind, ns string) func(string) error {
		return func(name string) error {
			_, err := c.Get(ctx, &apiv1.GetRequest{Kind: kind, Namespace: ns, Name: name})
			return err
		}
	}
	deleteOf := func(c apiv1.APIClient, kind, ns string) func(string) error {
		return func(name string) error {
			_, err := c.Delete(ctx, &apiv1.DeleteRequest{Kind: kind, Namespace: ns, Name: name})
			return err
		}
	}
	patchOf := func(c apiv1.APIClient, kind, ns string) func(string) error {
		return func(name string) error {
			_, err := c.Patch(ctx, &apiv1.PatchRequest{Kind: kind, Namespace: ns, Name: name, Patch: []byte(`{"metadata":{"labels":{"x":"y"}}}`)})
			return err
		}
	}
	watchOf := func(c apiv1.APIClient, kind, ns string) func(string) error {
		return func(name string) error {
			w, err := c.Watch(ctx, &apiv1.WatchRequest{Kind: kind, Namespace: ns, Name: name})
			if err != nil {
				return err
			}
			_, err = w.Recv()
			return err
		}
	}
	evictOf := func(c apiv1.APIClient, ns string) func(string) error {
		return func(name string) error {
			_, err := c.Evict(ctx, &apiv1.EvictRequest{Namespace: ns, Name: name})
			return err
		}
	}
	logsOf := func(c streamv1.PodStreamsClient, ns string) func(string) error {
		return func(name string) error {
			s, err := c.Logs(ctx, &streamv1.LogsRequest{Pod: &streamv1.PodRef{Namespace: ns, Name: name}})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}
	}
	probes := []struct {
		what     string
		do       func(name string) error
		existing string
	}{
		{"viewer gets a secret", getOf(viewerAPI, "Secret", "team-a"), "db"},
		{"viewer deletes a pod", deleteOf(viewerAPI, "Pod", "team-a"), "bot"},
		{"viewer patches a secret", patchOf(viewerAPI, "Secret", "team-a"), "db"},
		{"viewer evicts a pod", evictOf(viewerAPI, "team-a"), "bot"},
		{"viewer watches a secret by name", watchOf(viewerAPI, "Secret", "team-a"), "db"},
		{"worker node gets a secret no pod of it uses", getOf(workerAPI, "Secret", "team-a"), "db"},
		{"worker node gets a volume not its own", getOf(workerAPI, "PersistentVolume", ""), "pv-static"},
		{"worker node patches a volume not its own", patchOf(workerAPI, "PersistentVolume", ""), "pv-static"},
		{"worker node deletes a volume not its own", deleteOf(workerAPI, "PersistentVolume", ""), "pv-static"},
		{"service account without binding gets a pod", getOf(plainAPI, "Pod", "team-a"), "bot"},
		{"service account without binding deletes a secret", deleteOf(plainAPI, "Secret", "team-a"), "db"},
		{"service account without binding reads a pod's logs", logsOf(plainStreams, "team-a"), "bot"},
		{"service account without binding watches a secret by name", watchOf(plainAPI, "Secret", "team-a"), "db"},
		{"service account (edit in team-a) gets a secret in team-b", getOf(robotAPI, "Secret", "team-b"), "keys"},
		{"service account (edit in team-a) deletes a secret in team-b", deleteOf(robotAPI, "Secret", "team-b"), "keys"},
	}
	for _, p := range probes {
		there, missing := p.do(p.existing), p.do("no-such-"+p.existing)
		if status.Code(there) != codes.PermissionDenied || status.Code(missing) != codes.PermissionDenied {
			t.Errorf("%s: existing %v, missing %v; want PermissionDenied for both", p.what, there, missing)
			continue
		}
		if a, b := status.Convert(there).Message(), strings.ReplaceAll(status.Convert(missing).Message(), "no-such-"+p.existing, p.existing); a != b {
			t.Errorf("%s: the refusal tells the object exists:\n  existing: %s\n  missing:  %s", p.what, a, b)
		}
	}

	// The token dies with its pod.
	zero := int64(0)
	if _, _, err := admin.Delete(ctx, "Pod", "team-a", "bot", client.DeleteOptions{GracePeriodSeconds: &zero, UID: pod.GetMetadata().GetUid()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the deleted pod's token to be refused", func() bool {
		return status.Code(list(robot, "Pod", "team-a")(ctx)) == codes.Unauthenticated
	})
}
