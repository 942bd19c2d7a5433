package bootstrap_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// applyNamespace writes a namespace idempotently (apply), retrying through
// elections; once it returns, the write is acknowledged.
func (c *cluster) applyNamespace(t *testing.T, name string) {
	t.Helper()
	f := writeFile(t, t.TempDir(), name+".yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
	c.eventuallyCtl(t, 45*time.Second, "apply", "-f", f)
}

func (c *cluster) applyConfigMap(t *testing.T, ns, name, value string) {
	t.Helper()
	f := writeFile(t, t.TempDir(), name+".yaml", fmt.Sprintf(
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  value: %q\n", name, ns, value))
	c.eventuallyCtl(t, 45*time.Second, "apply", "-f", f)
}

func voters(ids ...string) map[string]string {
	m := map[string]string{}
	for _, id := range ids {
		m[id] = "voter"
	}
	return m
}

// TestClusterLifecycleAndSecurity builds a 5-node control plane with ctl
// init and ctl join, loses and restarts its leader, then checks every
// refusal of the security model and a snapshot restore into a fresh
// cluster.
func TestClusterLifecycleAndSecurity(t *testing.T) {
	c, controlToken, workerToken := newCluster(t, "c1")
	c.joinControl(t, "c2", controlToken)
	c.joinControl(t, "c3", controlToken)
	c.waitMembers(t, 60*time.Second, voters("c1", "c2", "c3"))

	t.Run("FourthJoinsAsNonVoterFifthMakesFiveVoters", func(t *testing.T) {
		c.joinControl(t, "c4", controlToken)
		want := voters("c1", "c2", "c3")
		want["c4"] = "non-voter"
		c.waitMembers(t, 30*time.Second, want)
		c.joinControl(t, "c5", controlToken)
		ms := c.waitMembers(t, 60*time.Second, voters("c1", "c2", "c3", "c4", "c5"))
		for _, n := range c.nodes {
			if ms[n.name].api != n.api() {
				t.Errorf("ctl members: %s API %s, want %s", n.name, ms[n.name].api, n.api())
			}
		}
	})

	t.Run("LeaderKilledClusterGoesOnAndKilledNodeResumes", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			c.applyNamespace(t, fmt.Sprintf("before-%d", i))
		}
		lead := c.leader(t)
		lead.p.kill()
		c.applyNamespace(t, "after-leader-kill")
		c.mustCtl(t, "create", "namespace", "created-without-old-leader")
		for i := 0; i < 3; i++ {
			c.mustCtl(t, "get", "namespace", fmt.Sprintf("before-%d", i))
		}
		// The same command line again: it resumes from its data dir.
		lead.start()
		lead.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`control node `+lead.name+` serving`))
		if out := lead.p.out.String(); strings.Contains(out, "joined the cluster") || strings.Contains(out, "Cluster created") {
			t.Fatalf("restarted %s joined or created anew instead of resuming:\n%s", lead.name, out)
		}
		c.waitMembers(t, 60*time.Second, voters("c1", "c2", "c3", "c4", "c5"))
		// It serves what was written while it was down, through its own API.
		out := mustRun(t, "--config", c.admin, "--server", lead.api(), "get", "namespaces")
		for _, ns := range []string{"before-0", "after-leader-kill", "created-without-old-leader"} {
			if !strings.Contains(out, ns) {
				t.Errorf("restarted %s does not list namespace %s:\n%s", lead.name, ns, out)
			}
		}
	})

	t.Run("NoClientCertificate", func(t *testing.T) {
		cfg, err := client.LoadConfig(c.admin)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cfg.TLS()
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = nil // trust the cluster, present nothing
		conn, err := grpc.NewClient(c.nodes[1].api(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = apiv1.NewAPIClient(conn).List(ctx, &apiv1.ListRequest{Kind: "Namespace"})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "needs a client certificate") {
			t.Fatalf("list without a client certificate: %v; want Unauthenticated saying a client certificate is needed", err)
		}
	})

	t.Run("CertificateFromAnotherCA", func(t *testing.T) {
		other, err := pki.CreateCA(pki.DefaultCAConfig())
		if err != nil {
			t.Fatal(err)
		}
		kp, _, err := other.Issue(pki.IssueOptions{Identity: pki.AdminIdentity()})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := client.LoadConfig(c.admin)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		writeFile(t, dir, "foreign.crt", string(kp.CertPEM))
		writeFile(t, dir, "foreign.key", string(kp.KeyPEM))
		foreign := &client.Config{Servers: []string{c.nodes[1].api()}, CertificateAuthorityData: cfg.CertificateAuthorityData,
			ClientCertificate: "foreign.crt", ClientKey: "foreign.key"}
		path := filepath.Join(dir, "foreign.conf")
		if err := foreign.Save(path); err != nil {
			t.Fatal(err)
		}
		line := mustFail(t, "remote error: tls: unknown certificate authority", "--config", path, "get", "namespaces")
		t.Logf("foreign CA refused: %s", line)
	})

	t.Run("WrongPinNeverSendsTheSecret", func(t *testing.T) {
		tok := strings.TrimSpace(c.mustCtl(t, "token", "create", "--role", "control"))
		parsed, err := pki.ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		parsed.Pin = strings.Repeat("ab", 32)
		dir := filepath.Join(t.TempDir(), "x1")
		mustFail(t, "cluster CA does not match the token's pin", "join", "--control", "--gossip=false", "--token", parsed.String(),
			"--data-dir", dir, "--name", "x1", "--advertise", "127.0.0.1", "--bind-address", "127.0.0.1",
			"--api-port", fmt.Sprint(freePort(t)), "--raft-port", fmt.Sprint(freePort(t)), c.anyAPI())
		// No Join call with this token reached any node (joins are audited
		// by token id; the successful joins of c2..c5 are, as a control).
		if n := c.auditJoins(t, "token:"+parsed.ID); n != 0 {
			t.Fatalf("%d join requests with token %s reached the cluster; the client must stop at the pin", n, parsed.ID)
		}
		if n := c.auditJoins(t, "token:"+tokenID(t, controlToken)); n < 4 {
			t.Fatalf("the audit log shows %d joins with the init control token, want >= 4: the check above proves nothing", n)
		}
		if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
			t.Fatalf("a refused join left %s/node.json behind", dir)
		}
	})

	t.Run("ExpiredToken", func(t *testing.T) {
		tok := strings.TrimSpace(c.mustCtl(t, "token", "create", "--role", "worker", "--ttl", "1s"))
		id := tokenID(t, tok)
		c.waitTokenState(t, id, "expired")
		mustFail(t, "join token has expired", "join", "--gossip=false", "--token", tok, "--data-dir", filepath.Join(t.TempDir(), "w"),
			"--name", "w-expired", "--advertise", "127.0.0.1", c.anyAPI())
	})

	t.Run("RevokedToken", func(t *testing.T) {
		tok := strings.TrimSpace(c.mustCtl(t, "token", "create", "--role", "worker"))
		id := tokenID(t, tok)
		c.mustCtl(t, "token", "revoke", id)
		c.waitTokenState(t, id, "revoked")
		mustFail(t, "join token was revoked", "join", "--gossip=false", "--token", tok, "--data-dir", filepath.Join(t.TempDir(), "w"),
			"--name", "w-revoked", "--advertise", "127.0.0.1", c.anyAPI())
	})

	t.Run("ViewerIsReadOnly", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "alice.conf")
		c.mustCtl(t, "user", "create", "alice", "--role", "viewer", "-o", conf)
		srv := []string{"--config", conf, "--server", c.servers()}
		if out := mustRun(t, append(srv, "get", "namespaces")...); !strings.Contains(out, "before-0") {
			t.Fatalf("viewer cannot read namespaces:\n%s", out)
		}
		mustFail(t, `user "user:alice" (role viewer) may not create namespaces`, append(srv, "create", "namespace", "by-viewer")...)
		mustFail(t, "no RBAC rule allows it", append(srv, "delete", "namespace", "before-0")...)
		mustFail(t, "only admins may", append(srv, "token", "create")...)
	})

	var worker *node
	t.Run("NodeRestriction", func(t *testing.T) {
		worker = c.joinWorker(t, "w1", workerToken)
		dir := t.TempDir()
		// The pods tolerate every taint: the node lifecycle controller
		// would otherwise evict them from these heartbeat-less nodes.
		c.eventuallyCtl(t, 30*time.Second, "apply", "-f", writeFile(t, dir, "objs.yaml", `apiVersion: v1
kind: Node
metadata:
  name: w-other
---
apiVersion: v1
kind: Pod
metadata:
  name: on-w1
  namespace: default
spec:
  nodeName: w1
  tolerations:
  - operator: Exists
  containers:
  - name: c
    image: busybox
---
apiVersion: v1
kind: Pod
metadata:
  name: on-other
  namespace: default
spec:
  nodeName: w-other
  tolerations:
  - operator: Exists
  containers:
  - name: c
    image: busybox
`))
		nodeConf := filepath.Join(worker.dataDir, "node.conf")
		deploy := writeFile(t, dir, "deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: sneaky
  namespace: default
spec:
  selector:
    matchLabels: {app: sneaky}
  template:
    metadata:
      labels: {app: sneaky}
    spec:
      containers:
      - name: c
        image: busybox
`)
		mustFail(t, `user "node:w1" (role node) may not`, "--config", nodeConf, "apply", "-f", deploy)
		mustFail(t, `may not create namespaces`, "--config", nodeConf, "create", "namespace", "by-node")
		// The node authorizer: no listing of secrets (it gets, by name, those
		// its pods reference).
		mustFail(t, `may not list secrets: a node may not list or watch secrets`, "--config", nodeConf, "get", "secrets", "-A")

		cfg, err := client.LoadConfig(nodeConf)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.NewFromConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Get, change, update — retried on a conflict, as every client does:
		// the node lifecycle controller rewrites a silent worker's Node
		// (taints, Ready=Unknown) between our read and our write.
		setReady := func(name string) error {
			for {
				n, err := client.Get[*apiv1.Node](ctx, cl, "", name)
				if err != nil {
					return err
				}
				n.Status = &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: "True"}}}
				_, err = client.UpdateStatus(ctx, cl, n)
				if !client.IsConflict(err) || ctx.Err() != nil {
					return err
				}
			}
		}
		if err := setReady("w1"); err != nil {
			t.Fatalf("w1 updating its own Node status: %v", err)
		}
		err = setReady("w-other")
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `may write only its own Node "w1"`) {
			t.Fatalf("w1 updating w-other's status: %v; want PermissionDenied naming its own node", err)
		}
		patch := []byte(`{"status":{"phase":"Running"}}`)
		if _, err := cl.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Pod", Namespace: "default", Name: "on-w1", Patch: patch, Status: true}); err != nil {
			t.Fatalf("w1 patching the status of its own pod: %v", err)
		}
		_, err = cl.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Pod", Namespace: "default", Name: "on-other", Patch: patch, Status: true})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `bound to node "w-other"`) {
			t.Fatalf("w1 patching the status of a pod on w-other: %v; want PermissionDenied", err)
		}
		if c.auditCount(t, `"user":"node:w1"`, `"result":"denied"`) == 0 {
			t.Errorf("no denied request of node:w1 in any audit log")
		}
	})

	t.Run("SnapshotRestoreIntoFreshCluster", func(t *testing.T) {
		c.applyConfigMap(t, "before-1", "settings", "restored exactly")
		c.eventuallyCtl(t, 30*time.Second, "apply", "-f", writeFile(t, t.TempDir(), "secret.yaml", `apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: before-2
stringData:
  password: s3cret
`))
		// Kinds no controller writes are compared whole (uid, times,
		// resourceVersion); nodes by identity (node lifecycle keeps
		// writing their status in both clusters).
		kinds := []struct {
			args  []string
			whole bool
		}{
			{[]string{"get", "namespaces", "-o", "yaml"}, true},
			// kube-root-ca.crt is each cluster's own CA, published by its leader.
			{[]string{"get", "configmaps", "-A", "-o", "yaml", "--field-selector", "metadata.name!=kube-root-ca.crt"}, true},
			{[]string{"get", "secrets", "-A", "-o", "yaml"}, true},
			{[]string{"get", "nodes", "-o", "yaml"}, false},
		}
		var wants [][]any
		for _, k := range kinds {
			items := listItems(t, c.mustCtl(t, k.args...))
			if !k.whole {
				items = identities(items)
			}
			if len(items) == 0 {
				t.Fatalf("ctl %s: nothing to compare", strings.Join(k.args, " "))
			}
			wants = append(wants, items)
		}
		file := filepath.Join(t.TempDir(), "backup.snap")
		if out := c.mustCtl(t, "snapshot", "save", file); !strings.Contains(out, "saved to") {
			t.Fatalf("snapshot save: %s", out)
		}
		// A fresh two-node cluster; the restore goes to the follower, which
		// streams it on to the leader, and every member installs it.
		fresh, freshToken, _ := newCluster(t, "r1")
		r2 := fresh.joinControl(t, "r2", freshToken)
		fresh.waitMembers(t, 30*time.Second, map[string]string{"r1": "voter", "r2": "non-voter"})
		if out := mustRun(t, "--config", fresh.admin, "--server", r2.api(), "snapshot", "restore", file); !strings.Contains(out, "restored") {
			t.Fatalf("snapshot restore: %s", out)
		}
		for i, k := range kinds {
			got := listItems(t, mustRun(t, append([]string{"--config", fresh.admin, "--server", r2.api()}, k.args...)...))
			if !k.whole {
				got = identities(got)
			}
			// The list's own revision moves on with the fresh cluster's
			// writes; the objects must not.
			if !reflect.DeepEqual(wants[i], got) {
				t.Errorf("ctl %s: objects differ after restore:\n--- live cluster\n%v\n--- restored\n%v", strings.Join(k.args, " "), wants[i], got)
			}
		}
		if !strings.Contains(fresh.mustCtl(t, "get", "configmap", "settings", "-n", "before-1", "-o", "yaml"), "restored exactly") {
			t.Errorf("restored configmap lost its data")
		}
		// The restored cluster keeps working.
		fresh.mustCtl(t, "create", "namespace", "after-restore")
	})
	_ = worker
}

// listItems is the items of a `ctl get -o yaml` List.
func listItems(t *testing.T, y string) []any {
	t.Helper()
	var l struct {
		Items []any `json:"items"`
	}
	if err := sigsyaml.Unmarshal([]byte(y), &l); err != nil {
		t.Fatalf("not a YAML list: %v\n%s", err, y)
	}
	return l.Items
}

// identities keeps what no controller changes: uid, name, namespace and
// creation time.
func identities(items []any) []any {
	out := make([]any, len(items))
	for i, it := range items {
		m, _ := it.(map[string]any)
		md, _ := m["metadata"].(map[string]any)
		out[i] = []any{md["uid"], md["name"], md["namespace"], md["creationTimestamp"]}
	}
	return out
}

func tokenID(t *testing.T, tok string) string {
	t.Helper()
	p, err := pki.ParseToken(tok)
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	return p.ID
}

func (c *cluster) waitTokenState(t *testing.T, id, state string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + id + `\s+\S+\s+` + state + `\s`)
	var out string
	ok := testutil.Eventually(20*time.Second, func() bool {
		out, _, _ = c.ctl(t, "token", "list")
		return re.MatchString(out)
	})
	if !ok {
		t.Fatalf("token %s never became %s:\n%s", id, state, out)
	}
}

// auditCount counts audit lines containing every needle, over all nodes.
func (c *cluster) auditCount(t *testing.T, needles ...string) int {
	t.Helper()
	n := 0
	for _, nd := range c.nodes {
		f, err := os.Open(filepath.Join(nd.dataDir, "audit", "audit.log"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
	line:
		for sc.Scan() {
			for _, nd := range needles {
				if !strings.Contains(sc.Text(), nd) {
					continue line
				}
			}
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				t.Errorf("audit line is not JSON: %s", sc.Text())
			}
			n++
		}
		f.Close()
	}
	return n
}

func (c *cluster) auditJoins(t *testing.T, user string) int {
	return c.auditCount(t, `"user":"`+user+`"`, `"verb":"join"`)
}
