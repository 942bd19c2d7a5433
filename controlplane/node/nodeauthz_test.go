package node

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// twoControlNodes runs `ctl init` (c1) and `ctl join --control` (c2) and
// returns their API addresses, the admin client config and the CA.
func twoControlNodes(t *testing.T) (addrs []string, adminConf string, ca *pki.CA) {
	t.Helper()
	dir := t.TempDir()
	cfg, out := testConfig(t, filepath.Join(dir, "c1"), "c1")
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	re := regexp.MustCompile(`(?s)export SKIFF_CONFIG=(\S+).*ctl join --control --token (\S+) (\S+)`)
	var m []string
	testutil.WaitFor(t, 30*time.Second, "init to print the join commands", func() bool {
		m = re.FindStringSubmatch(out.String())
		return m != nil
	})
	adminConf, token, addr := m[1], m[2], m[3]
	cfg2, out2 := testConfig(t, filepath.Join(dir, "c2"), "c2")
	runInBackground(t, func(ctx context.Context) error {
		return Join(ctx, cfg2, JoinOptions{Address: addr, Token: token, Control: true})
	})
	testutil.WaitFor(t, 60*time.Second, "c2 to serve", func() bool { return strings.Contains(out2.String(), "control node c2 serving") })
	ca, err := pki.LoadCA(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	return []string{addr, hostPort("127.0.0.1", cfg2.APIPort)}, adminConf, ca
}

func clientOf(t *testing.T, tc *tls.Config, servers ...string) *client.Client {
	t.Helper()
	o := client.DefaultOptions()
	o.Servers, o.TLS, o.MaxAttempts = servers, tc, 3
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func adminClient(t *testing.T, conf string, servers ...string) *client.Client {
	t.Helper()
	cc, err := client.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return clientOf(t, tc, servers...)
}

// nodeClient holds a certificate for node:<name> issued by the cluster CA,
// as `ctl join` gets one.
func nodeClient(t *testing.T, ca *pki.CA, name string, servers ...string) *client.Client {
	t.Helper()
	id, err := pki.NodeIdentity(name)
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := ca.Issue(pki.IssueOptions{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return clientOf(t, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}, servers...)
}

func mustCreate[T client.Object](t *testing.T, c *client.Client, obj T) T {
	t.Helper()
	out, err := client.Create(context.Background(), c, obj)
	if err != nil {
		t.Fatalf("create %s: %v", client.KindOf(obj), err)
	}
	return out
}

func secret(name string) *apiv1.Secret {
	return &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string][]byte{"k": []byte("v-" + name)}}
}

func configMap(name string) *apiv1.ConfigMap {
	return &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string]string{"k": "v-" + name}}
}

// podUsing references secret s through a volume and configmap cm through
// an env var (the real reference paths the agent resolves).
func podUsing(name, nodeName, s, cm string) *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}, Spec: &apiv1.PodSpec{
		NodeName: nodeName,
		Volumes:  []*apiv1.Volume{{Name: "s", Secret: &apiv1.SecretVolumeSource{SecretName: s}}},
		Containers: []*apiv1.Container{{Name: "c", Image: "busybox",
			Env: []*apiv1.EnvVar{{Name: "K", ValueFrom: &apiv1.EnvVarSource{ConfigMapKeyRef: &apiv1.KeySelector{Name: cm, Key: "k"}}}}}}}}
}

// getErr is the error of a Get of kind default/name.
func getErr(c *client.Client, kind, name string) error {
	_, err := c.API().Get(context.Background(), &apiv1.GetRequest{Kind: kind, Namespace: "default", Name: name})
	return err
}

// watchErr opens a watch of kind (all namespaces) from revision 1 and
// returns the error of its first receive (nil: an event came).
func watchErr(c *client.Client, kind string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.API().Watch(ctx, &apiv1.WatchRequest{Kind: kind, ResourceVersion: "1"})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// TestNodeAuthorizer is the node authorizer through the real API server of
// a leader and a follower, with certificates from the cluster CA: node w1
// gets the Secret and ConfigMap its pod references, and nothing else of
// those kinds (not another node's pod's, not an unreferenced one, no List,
// no Watch from revision 1); the admin reads everything; the set follows
// pods as they are bound and deleted.
func TestNodeAuthorizer(t *testing.T) {
	addrs, adminConf, ca := twoControlNodes(t)
	admin := adminClient(t, adminConf, addrs...)
	ctx := context.Background()
	for _, addr := range addrs {
		c := adminClient(t, adminConf, addr)
		testutil.WaitFor(t, 30*time.Second, "the default namespace on "+addr, func() bool {
			_, err := client.Get[*apiv1.Namespace](ctx, c, "", "default")
			return err == nil
		})
	}
	for _, n := range []string{"w1", "w2", "free"} {
		mustCreate(t, admin, secret("secret-"+n))
		mustCreate(t, admin, configMap("cm-"+n))
	}
	mustCreate(t, admin, podUsing("web-w1", "w1", "secret-w1", "cm-w1"))
	mustCreate(t, admin, podUsing("web-w2", "w2", "secret-w2", "cm-w2"))

	type row struct {
		what  string
		try   func(c *client.Client, kind string) error
		allow bool
	}
	lower := map[string]string{"Secret": "secret", "ConfigMap": "cm"}
	rows := []row{
		{"get own pod's", func(c *client.Client, kind string) error { return getErr(c, kind, lower[kind]+"-w1") }, true},
		{"get other node's pod's", func(c *client.Client, kind string) error { return getErr(c, kind, lower[kind]+"-w2") }, false},
		{"get unreferenced", func(c *client.Client, kind string) error { return getErr(c, kind, lower[kind]+"-free") }, false},
		{"list all namespaces", func(c *client.Client, kind string) error {
			_, _, err := c.ListEnvelopes(ctx, kind, client.ListOptions{})
			return err
		}, false},
		{"list namespace", func(c *client.Client, kind string) error {
			_, _, err := c.ListEnvelopes(ctx, kind, client.ListOptions{Namespace: "default"})
			return err
		}, false},
		{"watch from revision 1", watchErr, false},
	}
	for i, addr := range addrs {
		server := []string{"leader c1", "follower c2"}[i]
		w1 := nodeClient(t, ca, "w1", addr)
		adm := adminClient(t, adminConf, addr)
		for _, kind := range []string{"Secret", "ConfigMap"} {
			for _, r := range rows {
				err := r.try(w1, kind)
				switch {
				case r.allow && err != nil:
					t.Errorf("%s: node w1 %s %s: %v, want allowed", server, r.what, kind, err)
				case !r.allow && !client.IsForbidden(err):
					t.Errorf("%s: node w1 %s %s: %v, want PermissionDenied", server, r.what, kind, err)
				}
				if err := r.try(adm, kind); err != nil {
					t.Errorf("%s: admin %s %s: %v, want allowed", server, r.what, kind, err)
				}
			}
		}
		err := getErr(w1, "Secret", "secret-w2")
		if want := `user "node:w1" (role node) may not get secrets "secret-w2" in namespace "default": no pod bound to node "w1" references it`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: refusal %v, want it to say %q", server, err, want)
		}
	}

	// The set follows the pods: a pod bound to w1 later makes its secret
	// readable on both servers; deleting it takes that back.
	w1 := nodeClient(t, ca, "w1", addrs[0])
	w1f := nodeClient(t, ca, "w1", addrs[1])
	mustCreate(t, admin, secret("late"))
	mustCreate(t, admin, configMap("late-cm"))
	pod := mustCreate(t, admin, podUsing("late-pod", "", "late", "late-cm"))
	if err := getErr(w1f, "Secret", "late"); !client.IsForbidden(err) {
		t.Fatalf("secret of an unbound pod: %v, want PermissionDenied", err)
	}
	errs, err := client.Bind(ctx, admin, []*apiv1.Binding{{Namespace: "default", Name: "late-pod", Uid: pod.GetMetadata().GetUid(), NodeName: "w1"}})
	if err != nil || errs[0] != nil {
		t.Fatalf("bind: %v %v", err, errs)
	}
	for _, c := range []*client.Client{w1, w1f} {
		testutil.WaitFor(t, 10*time.Second, "the bound pod's secret and configmap to become readable", func() bool {
			return getErr(c, "Secret", "late") == nil && getErr(c, "ConfigMap", "late-cm") == nil
		})
	}
	if _, _, err := admin.Delete(ctx, "Pod", "default", "late-pod", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{w1, w1f} {
		testutil.WaitFor(t, 10*time.Second, "the deleted pod's secret to be refused", func() bool {
			return client.IsForbidden(getErr(c, "Secret", "late")) && client.IsForbidden(getErr(c, "ConfigMap", "late-cm"))
		})
	}
	// Another pod of w1 still grants its own objects.
	if err := getErr(w1f, "Secret", "secret-w1"); err != nil {
		t.Errorf("own pod's secret after another pod went: %v", err)
	}
}

// TestNodeRestriction: through a follower's API with node certificates, a
// node registers and keeps its status and heartbeat current, but may not
// change the taints an administrator put on its Node, nor set, change or
// remove labels under node-restriction.kubernetes.io/, by update, patch
// or apply; nor set or change its spec.podCIDR; nor write another Node,
// nor create pods. The admin still may.
func TestNodeRestriction(t *testing.T) {
	addrs, adminConf, ca := twoControlNodes(t)
	ctx := context.Background()
	admin := adminClient(t, adminConf, addrs...)
	w1 := nodeClient(t, ca, "w1", addrs[1])
	testutil.WaitFor(t, 30*time.Second, "the follower to serve node w1", func() bool {
		_, err := client.Get[*apiv1.Namespace](ctx, adminClient(t, adminConf, addrs[1]), "", "default")
		return err == nil
	})
	mustDeny := func(what string, err error, want string) {
		t.Helper()
		if !client.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want PermissionDenied saying %q", what, err, want)
		}
	}
	const zone = "node-restriction.kubernetes.io/zone"

	// Registration: its own Node, with ordinary labels; none under the
	// restricted domain, and no other node's.
	self := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1", Labels: map[string]string{"kubernetes.io/hostname": "w1"}}, Spec: &apiv1.NodeSpec{}}
	if _, err := client.Create(ctx, w1, self); err != nil {
		t.Fatalf("node w1 registers: %v", err)
	}
	_, err := client.Create(ctx, nodeClient(t, ca, "w3", addrs[1]), &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w3", Labels: map[string]string{zone: "x"}}})
	mustDeny("node w3 registers with a restricted label", err, `may not set, change or remove labels under node-restriction.kubernetes.io/ on itself (administrators set them): "node-restriction.kubernetes.io/zone" set`)
	_, err = client.Create(ctx, w1, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w2"}})
	mustDeny("node w1 creates Node w2", err, `a node may write only its own Node "w1"`)

	// The admin taints it and labels it.
	if _, err := client.Patch[*apiv1.Node](ctx, admin, "", "w1",
		[]byte(`{"metadata":{"labels":{"`+zone+`":"a"}},"spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoSchedule"}]}}`)); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, admin, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w2"}, Spec: &apiv1.NodeSpec{}})

	cur, err := client.Get[*apiv1.Node](ctx, w1, "", "w1")
	if err != nil {
		t.Fatal(err)
	}
	untainted := codec.Clone(cur)
	untainted.Spec.Taints = nil
	untainted.Metadata.ResourceVersion = ""
	const taintMsg = `may not update nodes "w1": a node may not change its own taints (spec.taints): stored [dedicated=db:NoSchedule], requested []`
	_, err = client.Update(ctx, w1, untainted)
	mustDeny("node w1 removes the admin's taint by update", err, taintMsg)
	_, err = client.Patch[*apiv1.Node](ctx, w1, "", "w1", []byte(`{"spec":{"taints":null}}`))
	mustDeny("node w1 removes the admin's taint by patch", err, "a node may not change its own taints")
	_, err = client.Patch[*apiv1.Node](ctx, w1, "", "w1", []byte(`{"spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoSchedule"},{"key":"mine","effect":"NoExecute"}]}}`))
	mustDeny("node w1 adds a taint", err, "a node may not change its own taints")
	applied := &apiv1.Node{ApiVersion: "v1", Kind: "Node", Metadata: &apiv1.ObjectMeta{Name: "w1"},
		Spec: &apiv1.NodeSpec{Taints: []*apiv1.Taint{{Key: "mine", Effect: "NoSchedule"}}}}
	_, _, err = w1.Apply(ctx, applied)
	mustDeny("node w1 replaces its taints by apply", err, "a node may not change its own taints")
	for _, p := range []struct{ what, patch, want string }{
		{"changes", `{"metadata":{"labels":{"` + zone + `":"b"}}}`, `"node-restriction.kubernetes.io/zone" changed`},
		{"removes", `{"metadata":{"labels":{"` + zone + `":null}}}`, `"node-restriction.kubernetes.io/zone" removed`},
		{"sets a subdomain's", `{"metadata":{"labels":{"team.node-restriction.kubernetes.io/x":"y"}}}`, `"team.node-restriction.kubernetes.io/x" set`},
	} {
		_, err = client.Patch[*apiv1.Node](ctx, w1, "", "w1", []byte(p.patch))
		mustDeny("node w1 "+p.what+" a restricted label", err, p.want)
	}
	// The pod range is the control plane's: the node may not pick one,
	// nor change the one it was given.
	const cidrMsg = "a node may not set or change its own pod range (spec.podCIDR)"
	_, err = client.Patch[*apiv1.Node](ctx, w1, "", "w1", []byte(`{"spec":{"podCIDR":"10.244.9.0/24","podCIDRs":["10.244.9.0/24"]}}`))
	mustDeny("node w1 sets its own podCIDR", err, cidrMsg+`: stored "", requested "10.244.9.0/24"`)
	_, err = client.Create(ctx, nodeClient(t, ca, "w4", addrs[1]), &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w4"}, Spec: &apiv1.NodeSpec{PodCIDR: "10.244.9.0/24"}})
	mustDeny("node w4 registers with a podCIDR", err, cidrMsg)
	if _, err := client.Patch[*apiv1.Node](ctx, admin, "", "w1", []byte(`{"spec":{"podCIDR":"10.244.9.0/24","podCIDRs":["10.244.9.0/24"]}}`)); err != nil {
		t.Fatalf("the admin gives w1 a pod range: %v", err)
	}
	_, err = client.Patch[*apiv1.Node](ctx, w1, "", "w1", []byte(`{"spec":{"podCIDR":"10.244.10.0/24","podCIDRs":["10.244.10.0/24"]}}`))
	mustDeny("node w1 changes its podCIDR", err, cidrMsg+`: stored "10.244.9.0/24", requested "10.244.10.0/24"`)

	after, err := client.Get[*apiv1.Node](ctx, admin, "", "w1")
	if err != nil {
		t.Fatal(err)
	}
	if after.GetSpec().GetPodCIDR() != "10.244.9.0/24" {
		t.Fatalf("after the refused writes w1's podCIDR is %q, want the admin's 10.244.9.0/24", after.GetSpec().GetPodCIDR())
	}
	if len(after.GetSpec().GetTaints()) != 1 || after.GetMetadata().GetLabels()[zone] != "a" {
		t.Fatalf("after the refused writes the Node has taints %v and labels %v, want the admin's", after.GetSpec().GetTaints(), after.GetMetadata().GetLabels())
	}

	// What a node does write still works: status and heartbeat, its own
	// ordinary labels (keeping the taints, as the agent's adopt does), its Lease.
	now := time.Now().UTC().Format(time.RFC3339)
	st := &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: "True", LastHeartbeatTime: now}}}
	if _, err := client.UpdateStatus(ctx, w1, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1"}, Status: st}); err != nil {
		t.Errorf("node w1 writes its status: %v", err)
	}
	if _, err := w1.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Node", Name: "w1", Status: true,
		Patch: []byte(`{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"` + now + `"}]}}`)}); err != nil {
		t.Errorf("node w1 patches its status: %v", err)
	}
	labelled := codec.Clone(after)
	labelled.Metadata.Labels["kubernetes.io/arch"] = "amd64"
	labelled.Metadata.ResourceVersion = "" // the status writes above moved it
	if _, err := client.Update(ctx, w1, labelled); err != nil {
		t.Errorf("node w1 sets an ordinary label, keeping the taints: %v", err)
	}
	holder := "w1"
	lease := &apiv1.Lease{Metadata: &apiv1.ObjectMeta{Namespace: apiv1.NodeLeaseNamespace, Name: "w1"}, Spec: &apiv1.LeaseSpec{HolderIdentity: &holder}}
	if _, err := client.Create(ctx, w1, lease); err != nil {
		t.Errorf("node w1 creates its lease: %v", err)
	}

	// Other nodes and pods: no.
	w2, err := client.Get[*apiv1.Node](ctx, w1, "", "w2")
	if err != nil {
		t.Fatal(err)
	}
	w2.Metadata.Labels = map[string]string{"evil": "1"}
	_, err = client.Update(ctx, w1, w2)
	mustDeny("node w1 updates Node w2", err, `a node may write only its own Node "w1"`)
	_, err = client.UpdateStatus(ctx, w1, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w2"}, Status: st})
	mustDeny("node w1 writes Node w2's status", err, `a node may write only its own Node "w1"`)
	_, err = client.Create(ctx, w1, podUsing("mine", "w1", "s", "c"))
	mustDeny("node w1 creates a pod", err, `may not create pods "mine"`)

	// The admin still changes taints.
	if _, err := client.Patch[*apiv1.Node](ctx, admin, "", "w1", []byte(`{"spec":{"taints":null}}`)); err != nil {
		t.Errorf("admin removes the taint: %v", err)
	}
}
