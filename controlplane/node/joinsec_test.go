package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// dialConfig opens a gRPC connection as the identity of a client config.
func dialConfig(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	cc, err := client.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(cc.Servers[0], grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// auditEntries reads a control node's audit log.
func auditEntries(t *testing.T, dataDir string) []audit.Entry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, AuditDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e audit.Entry
		if err := json.Unmarshal([]byte(line), &e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

func hasAudit(t *testing.T, dataDir, user, verb, kind, code string) bool {
	for _, e := range auditEntries(t, dataDir) {
		if e.User == user && e.Verb == verb && e.Kind == kind && e.Code == code {
			return true
		}
	}
	return false
}

// On a real single-node cluster: a worker joins and heartbeats; a second
// machine joining under its live name is refused with advice, with a
// plain token; `ctl token create --node` is refused for a viewer and for
// a node; with the admin's node-bound token the re-join goes through.
// The worker's certificate is client-only. Snapshot save and restore
// leave audit lines, also when refused.
func TestRejoinLiveNodeAndSnapshotAudit(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, filepath.Join(dir, "c1"), "c1")
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var workerToken, addr string
	re := regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			workerToken, addr = m[1], m[2]
		}
		return m != nil
	})
	ctx := context.Background()
	adminConf := filepath.Join(cfg.DataDir, AdminConfigFile)
	admin := adminv1.NewAdminClient(dialConfig(t, adminConf))

	wcfg, wout := testConfig(t, filepath.Join(dir, "w1"), "w1")
	runInBackground(t, func(ctx context.Context) error {
		return Join(ctx, wcfg, JoinOptions{Address: addr, Token: workerToken})
	})
	testutil.WaitFor(t, 30*time.Second, "w1 to register", func() bool { return strings.Contains(wout.String(), "registered") })

	// The worker's certificate: its own address only, for client
	// authentication and for serving its stream port there.
	b, err := os.ReadFile(filepath.Join(wcfg.DataDir, PKIDir, workerKeyPair+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := pki.ParseCertificatesPEM(b)
	wc := certs[0]
	if len(wc.ExtKeyUsage) != 2 || wc.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || wc.ExtKeyUsage[1] != x509.ExtKeyUsageServerAuth ||
		len(wc.DNSNames) != 0 || len(wc.IPAddresses) != 1 || wc.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("worker certificate: usages %v, DNS %v, IPs %v; want client and server authentication for 127.0.0.1 only", wc.ExtKeyUsage, wc.DNSNames, wc.IPAddresses)
	}

	// w1 heartbeats as itself (its node.conf), as its agent would.
	nodeConf := filepath.Join(wcfg.DataDir, NodeConfigFile)
	ncc, err := client.LoadConfig(nodeConf)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := client.NewFromConfig(ncc)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lease := client.NewNodeLease(nc, "w1", 10*time.Second)
	testutil.WaitFor(t, 30*time.Second, "w1's heartbeat lease to be written", func() bool { return lease.Renew(ctx) == nil })

	// A second machine under the live name, with the ordinary token: refused.
	impostor, _ := testConfig(t, filepath.Join(dir, "w1-again"), "w1")
	err = Join(ctx, impostor, JoinOptions{Address: addr, Token: workerToken})
	if !errors.Is(err, pki.ErrNameInUse) || !strings.Contains(err.Error(), "--name") || !strings.Contains(err.Error(), "ctl token create --node w1") {
		t.Fatalf("join under a live node's name: %v, want ErrNameInUse advising --name or ctl token create --node w1", err)
	}
	t.Logf("refused with: %v", err)
	// A name nobody holds joins with the same token.
	w2, w2out := testConfig(t, filepath.Join(dir, "w2"), "w2")
	runInBackground(t, func(ctx context.Context) error { return Join(ctx, w2, JoinOptions{Address: addr, Token: workerToken}) })
	testutil.WaitFor(t, 30*time.Second, "w2 to register", func() bool { return strings.Contains(w2out.String(), "registered") })
	// w2's Node exists but has never heartbeated: not live, so a machine
	// replacing it joins under its name with the ordinary token.
	w2b, w2bOut := testConfig(t, filepath.Join(dir, "w2-replacement"), "w2")
	runInBackground(t, func(ctx context.Context) error { return Join(ctx, w2b, JoinOptions{Address: addr, Token: workerToken}) })
	testutil.WaitFor(t, 30*time.Second, "w2's replacement to join", func() bool {
		return strings.Contains(w2bOut.String(), "joined the cluster as worker node w2")
	})

	// Node-bound tokens are for admins only: a viewer and a node are refused.
	viewerConf := writeUserConfig(t, admin, dir, "bob", "viewer")
	for who, conf := range map[string]string{"viewer": viewerConf, "node w1": nodeConf} {
		_, err := adminv1.NewAdminClient(dialConfig(t, conf)).CreateToken(ctx, &adminv1.CreateTokenRequest{Role: "worker", Node: "w1"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s creating a token for w1: %v, want PermissionDenied", who, err)
		}
	}
	if _, err := admin.CreateToken(ctx, &adminv1.CreateTokenRequest{Role: "control", Node: "c1"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("node-bound control token: %v, want InvalidArgument", err)
	}
	bound, err := admin.CreateToken(ctx, &adminv1.CreateTokenRequest{Role: "worker", Node: "w1", TtlSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if bound.GetInfo().GetNode() != "w1" {
		t.Fatalf("token info %v does not name its node", bound.GetInfo())
	}
	// Bound to w1: not usable for another name.
	w3, _ := testConfig(t, filepath.Join(dir, "w3"), "w3")
	if err := Join(ctx, w3, JoinOptions{Address: addr, Token: bound.Token}); !errors.Is(err, pki.ErrTokenNode) {
		t.Fatalf("w1's token used for w3: %v, want ErrTokenNode", err)
	}
	// The re-join of w1 with it goes through while w1 is live.
	again, againOut := testConfig(t, filepath.Join(dir, "w1-rejoin"), "w1")
	runInBackground(t, func(ctx context.Context) error {
		return Join(ctx, again, JoinOptions{Address: addr, Token: bound.Token})
	})
	testutil.WaitFor(t, 30*time.Second, "w1 to re-join with its node-bound token", func() bool {
		return strings.Contains(againOut.String(), "joined the cluster as worker node w1")
	})

	// Snapshot save and restore are audited: refused for the viewer, done by the admin.
	viewer := adminv1.NewAdminClient(dialConfig(t, viewerConf))
	if err := drainSnapshot(ctx, viewer, io.Discard); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer snapshot save: %v", err)
	}
	var snap strings.Builder
	if err := drainSnapshot(ctx, admin, &snap); err != nil {
		t.Fatalf("admin snapshot save: %v", err)
	}
	rs, err := viewer.RestoreSnapshot(ctx)
	if err == nil {
		_ = rs.Send(&adminv1.SnapshotChunk{Size: int64(snap.Len()), Data: []byte(snap.String())})
		_, err = rs.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer snapshot restore: %v", err)
	}
	rs, err = admin.RestoreSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&adminv1.SnapshotChunk{Size: int64(snap.Len()), Data: []byte(snap.String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.CloseAndRecv(); err != nil {
		t.Fatalf("admin snapshot restore: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "audit lines of snapshot save and restore", func() bool {
		return hasAudit(t, cfg.DataDir, "admin", "save", "Snapshot", "OK") &&
			hasAudit(t, cfg.DataDir, "user:bob", "save", "Snapshot", "PermissionDenied") &&
			hasAudit(t, cfg.DataDir, "admin", "restore", "Snapshot", "OK") &&
			hasAudit(t, cfg.DataDir, "user:bob", "restore", "Snapshot", "PermissionDenied")
	})
}

func drainSnapshot(ctx context.Context, c adminv1.AdminClient, w io.Writer) error {
	s, err := c.SaveSnapshot(ctx, &adminv1.SaveSnapshotRequest{})
	if err != nil {
		return err
	}
	for {
		chunk, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.GetData()); err != nil {
			return err
		}
	}
}

// writeUserConfig has the admin issue a user certificate and writes a
// client config for it, as `ctl user create` does.
func writeUserConfig(t *testing.T, admin adminv1.AdminClient, dir, name, role string) string {
	t.Helper()
	key, _ := pki.NewKey()
	csr, err := pki.NewCSR(key, "user:"+name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := admin.CreateUser(context.Background(), &adminv1.CreateUserRequest{Name: name, Role: role, CsrPem: csr})
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := pki.ParseCertificatesPEM(resp.CertificatePem)
	if life := certs[0].NotAfter.Sub(certs[0].NotBefore); life < 90*24*time.Hour || life > 90*24*time.Hour+10*time.Minute {
		t.Fatalf("user certificate lives %s by default, want 90 days", life)
	}
	keyPEM, _ := pki.EncodeECPrivateKeyPEM(key)
	path := filepath.Join(dir, name+".conf")
	if err := inlineConfig(resp.ApiAddresses, resp.CaBundlePem, pki.KeyPair{CertPEM: resp.CertificatePem, KeyPEM: keyPEM}).Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}
