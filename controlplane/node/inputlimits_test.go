package node

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// securityNode runs a control node (real CA, real certificates, the real
// authorizer) and returns a function making a client for any identity.
func securityNode(t *testing.T, limits api.Limits) func(pki.Identity) *client.Client {
	t.Helper()
	cfg, out := testConfig(t, filepath.Join(t.TempDir(), "c1"), "c1")
	cfg.APILimits = limits
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var addr string
	re := regexp.MustCompile(`ctl join --token \S+ (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	ca, err := pki.LoadCA(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	clientFor := func(id pki.Identity) *client.Client {
		kp, _, err := ca.Issue(pki.IssueOptions{Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := kp.TLS()
		if err != nil {
			t.Fatal(err)
		}
		o := client.DefaultOptions()
		o.Servers, o.TLS = []string{addr}, pki.ClientTLSConfig(ca.Pool(), pki.StaticCert{Cert: cert}, "")
		c, err := client.New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	admin := clientFor(pki.AdminIdentity())
	testutil.WaitFor(t, 30*time.Second, "the default namespace", func() bool {
		_, err := client.Get[*apiv1.Namespace](context.Background(), admin, "", "default")
		return err == nil
	})
	return clientFor
}

func mustIdentity(t *testing.T) func(pki.Identity, error) pki.Identity {
	return func(id pki.Identity, err error) pki.Identity {
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
}

// wantInvalidAt fails unless err is InvalidArgument naming path (with the
// bad byte escaped, so the message itself prints).
func wantInvalidAt(t *testing.T, what string, err error, path string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%s: got %v, want InvalidArgument", what, err)
	}
	msg := status.Convert(err).Message()
	if !strings.Contains(msg, path+": ") || !strings.Contains(msg, "not valid UTF-8") || !strings.Contains(msg, `\xff`) {
		t.Fatalf("%s: message %q does not name %s and the bad byte", what, msg, path)
	}
}

// TestAPIRefusesInvalidUTF8 is issue 21's input finding: no identity can
// store a string that is not UTF-8 (which would make `get -o yaml` fail
// for every user), whatever the write path; valid multi-byte text is
// stored and prints.
func TestAPIRefusesInvalidUTF8(t *testing.T) {
	clientFor := securityNode(t, api.Limits{})
	admin := clientFor(pki.AdminIdentity())
	worker := clientFor(mustIdentity(t)(pki.NodeIdentity("w1")))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const bad = "ok\xffthen"

	// Annotation and ConfigMap data, by the admin (Create, CreateMany, Apply).
	cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default", Annotations: map[string]string{"note": bad}}}
	_, err := client.Create(ctx, admin, cm)
	wantInvalidAt(t, "annotation", err, `metadata.annotations["note"]`)
	cm = &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default"}, Data: map[string]string{"key": bad}}
	_, err = client.Create(ctx, admin, cm)
	wantInvalidAt(t, "configmap data", err, `data["key"]`)
	_, errs, err := client.CreateMany(ctx, admin, []*apiv1.ConfigMap{
		{Metadata: &apiv1.ObjectMeta{Name: "many-ok", Namespace: "default"}, Data: map[string]string{"k": "v"}}, cm})
	if err != nil || errs[0] != nil {
		t.Fatalf("CreateMany: call %v, valid item %v", err, errs[0])
	}
	wantInvalidAt(t, "CreateMany item", errs[1], `data["key"]`)
	_, _, err = admin.Apply(ctx, cm)
	wantInvalidAt(t, "apply", err, `data["key"]`)

	// Valid multi-byte text is stored and prints as YAML.
	good := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "good", Namespace: "default", Annotations: map[string]string{"note": "grüße 🚢"}},
		Data: map[string]string{"greeting": "日本語, ça va, Ελληνικά"}}
	got, err := client.Create(ctx, admin, good)
	if err != nil {
		t.Fatalf("valid multi-byte UTF-8 refused: %v", err)
	}
	if got.GetData()["greeting"] != "日本語, ça va, Ελληνικά" {
		t.Fatalf("stored %q", got.GetData()["greeting"])
	}
	// Update and merge patch of it.
	got.Data["greeting"] = bad
	_, err = client.Update(ctx, admin, got)
	wantInvalidAt(t, "update", err, `data["greeting"]`)
	_, err = client.Patch[*apiv1.ConfigMap](ctx, admin, "default", "good", []byte("{\"data\":{\"greeting\":\"\xff\"}}"))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "patch is not valid UTF-8") {
		t.Fatalf("patch with invalid UTF-8: %v", err)
	}

	// A worker: its own Node (labels; status through UpdateStatus) and an
	// Event message.
	node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1", Labels: map[string]string{"zone": "a"}, Annotations: map[string]string{"note": "nœud ✓"}}}
	created, err := client.Create(ctx, worker, node)
	if err != nil {
		t.Fatalf("worker creates its own Node (with a multi-byte annotation): %v", err)
	}
	created.Metadata.Labels["zone"] = bad
	_, err = client.Update(ctx, worker, created)
	wantInvalidAt(t, "node label by the node", err, `metadata.labels["zone"]`)
	created.Metadata.Labels["zone"] = "a"
	created.Status = &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: "True", Message: bad}}}
	_, err = client.UpdateStatus(ctx, worker, created)
	wantInvalidAt(t, "node status by the node", err, `status.conditions[0].message`)
	ev := &apiv1.Event{Metadata: &apiv1.ObjectMeta{Name: "w1.1", Namespace: "default"},
		InvolvedObject: &apiv1.ObjectReference{Kind: "Node", Name: "w1"}, Reason: "Starting", Message: bad}
	_, err = client.Create(ctx, worker, ev)
	wantInvalidAt(t, "event message by a node", err, "message")

	// Nothing that was refused got stored: every object still prints.
	var stored []client.Object
	cms, _, err := client.List[*apiv1.ConfigMap](ctx, admin, client.ListOptions{})
	for _, o := range cms {
		stored = append(stored, o)
	}
	nodes, _, err2 := client.List[*apiv1.Node](ctx, admin, client.ListOptions{})
	for _, o := range nodes {
		stored = append(stored, o)
	}
	events, _, err3 := client.List[*apiv1.Event](ctx, admin, client.ListOptions{})
	for _, o := range events {
		stored = append(stored, o)
	}
	if err != nil || err2 != nil || err3 != nil || len(stored) < 3 {
		t.Fatalf("list: %v %v %v (%d objects)", err, err2, err3, len(stored))
	}
	for _, o := range stored {
		if _, err := manifest.MarshalYAML(o); err != nil {
			t.Errorf("%s does not print as YAML: %v", o.GetMetadata().GetName(), err)
		}
	}
}

// openWatch opens a ConfigMap watch and waits until it is in place (the
// server's ready header) or refused (the stream's error).
func openWatch(ctx context.Context, c *client.Client) (apiv1.API_WatchClient, error) {
	st, err := c.API().Watch(ctx, &apiv1.WatchRequest{Kind: "ConfigMap", Namespace: "default"})
	if err != nil {
		return nil, err
	}
	md, err := st.Header()
	if err == nil && len(md.Get(api.WatchReadyHeader)) > 0 {
		return st, nil
	}
	if _, err := st.Recv(); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Internal, "watch sent an event before its ready header")
}

// TestAPICapsWatchesPerIdentity is issue 21's limits finding: a viewer
// past its watch cap is refused with ResourceExhausted naming the limit
// and how to raise it, while the admin (another identity) and a control
// node (exempt) are still served; closing watches frees the slots.
func TestAPICapsWatchesPerIdentity(t *testing.T) {
	const limit = 3
	clientFor := securityNode(t, api.Limits{WatchesPerIdentity: limit})
	admin := clientFor(pki.AdminIdentity())
	viewer := clientFor(mustIdentity(t)(pki.UserIdentity("alice", pki.RoleViewer)))
	control := clientFor(mustIdentity(t)(pki.ControlIdentity("c1")))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var cancels []context.CancelFunc
	var streams []apiv1.API_WatchClient
	for i := 0; i < limit; i++ {
		wctx, wcancel := context.WithCancel(ctx)
		st, err := openWatch(wctx, viewer)
		if err != nil {
			t.Fatalf("viewer watch %d of %d: %v", i+1, limit, err)
		}
		cancels, streams = append(cancels, wcancel), append(streams, st)
	}
	_, err := openWatch(ctx, viewer)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("viewer watch %d: %v, want ResourceExhausted", limit+1, err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, `"user:alice" has 3 open on this API server and the limit per identity is 3`) || !strings.Contains(msg, "--max-watches-per-identity") {
		t.Fatalf("refusal %q does not name the limit and how to raise it", msg)
	}
	// The viewer's other calls and its open watches are still served.
	if _, err := client.Get[*apiv1.Namespace](ctx, viewer, "", "default"); err != nil {
		t.Fatalf("viewer Get at its watch cap: %v", err)
	}
	// Other identities are not affected: the admin watches and writes, a
	// control node (its leader loops) is not capped at all.
	if _, err := openWatch(ctx, admin); err != nil {
		t.Fatalf("admin watch while the viewer is at its cap: %v", err)
	}
	for i := 0; i < limit+2; i++ {
		if _, err := openWatch(ctx, control); err != nil {
			t.Fatalf("control node watch %d: %v (control nodes are exempt)", i+1, err)
		}
	}
	if _, err := client.Create(ctx, admin, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "seen", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := streams[0].Recv()
	if err != nil || len(resp.GetEvents()) != 1 {
		t.Fatalf("viewer's open watch after the refusal: %v %v", resp, err)
	}

	// Closing two watches frees two slots, and no more.
	cancels[0]()
	cancels[1]()
	var reopened []apiv1.API_WatchClient
	testutil.WaitFor(t, 10*time.Second, "the closed watches' slots to be freed", func() bool {
		st, err := openWatch(ctx, viewer)
		if err == nil {
			reopened = append(reopened, st)
		}
		return len(reopened) == 2
	})
	if _, err := openWatch(ctx, viewer); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a watch past the cap after reopening two: %v, want ResourceExhausted", err)
	}
}
