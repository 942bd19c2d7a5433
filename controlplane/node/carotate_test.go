package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// renewAt renews holder's certificate through the join service at addr,
// as a worker's Renewer or `ctl user renew` does, trusting roots; it
// returns the new certificate and the CAs the answer says to trust.
func renewAt(t *testing.T, addr string, roots *x509.CertPool, holder tls.Certificate) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, cas, err := pki.NewJoinClient(pki.DefaultJoinClientConfig()).RenewWithCAs(ctxShort(t), addr, roots, pki.StaticCert{Cert: holder}, key)
	if err != nil {
		t.Fatalf("renew %s at %s: %v", holder.Leaf.Subject.CommonName, addr, err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificatesPEM(cas)
	if err != nil {
		t.Fatalf("renewal's CA list: %v", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return cert, pool
}

func tlsWith(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

func pending(resp *adminv1.RotateCAResponse) (all, blocking []string) {
	for _, p := range resp.GetPending() {
		all = append(all, p.Identity)
		if p.BlocksFinish {
			blocking = append(blocking, p.Identity)
		}
	}
	return all, blocking
}

// TestCARotation rotates the CA of a real three-node cluster with a real
// worker (w2, which notices the rotation and renews by itself) and a
// worker identity that renews when told (w1), through the real ports, with no restart: start (admins only,
// audited), the new CA trusted beside the old on every node, finish
// refused while the worker holds an old certificate, the worker's
// renewal, finish, and then every certificate of the old CA refused on
// the API port and the store port of every node while the new ones and
// the cluster itself keep working.
func TestCARotation(t *testing.T) {
	c := newSecurityCluster(t)
	c1 := c.nodes[0]
	oldRoots := c.ca.Pool()
	viewerOld := c.issue(t, must(pki.UserIdentity("bob", pki.RoleViewer)))
	adminOld := c.admin
	// The worker renews once before the rotation, so the cluster records
	// its certificate (a join would too).
	workerFirst := c.issue(t, must(pki.NodeIdentity("w1"))).Certificates[0]
	workerOld, _ := renewAt(t, c1.api(), oldRoots, workerFirst)
	c2Old := c.clientTLS(c.nodes[1].keyPair(t))
	// A real worker, which polls for the cluster's CAs and renews by
	// itself once a rotation starts.
	tok, err := adminService(t, c1.api(), c.admin).CreateToken(ctxShort(t), &adminv1.CreateTokenRequest{Role: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	w2, w2out := startControlNode(t, "w2", func(ctx context.Context, cfg Config) error {
		cfg.CAPollInterval = 100 * time.Millisecond
		return Join(ctx, cfg, JoinOptions{Address: c1.api(), Token: tok.Token})
	})
	testutil.WaitFor(t, 30*time.Second, "worker w2 to join and register", func() bool { return strings.Contains(w2out.String(), "registered") })
	w2Conf := func() *tls.Config {
		cc, err := client.LoadConfig(filepath.Join(w2.cfg.DataDir, NodeConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cc.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	w2Old := w2Conf()

	t.Run("RefusedToViewerAndNode", func(t *testing.T) {
		for name, tc := range map[string]*tls.Config{"viewer": viewerOld, "worker": tlsWith(workerOld, oldRoots)} {
			for _, phase := range []string{"start", "status", "finish"} {
				_, err := adminService(t, c1.api(), tc).RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: phase})
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("the %s asking for rotate %s: %v, want PermissionDenied", name, phase, err)
				}
			}
		}
		if !hasAudit(t, c1.cfg.DataDir, "user:bob", "rotate", "CA", "PermissionDenied") || !hasAudit(t, c1.cfg.DataDir, "node:w1", "rotate", "CA", "PermissionDenied") {
			t.Error("refused rotation calls left no audit line")
		}
		if _, err := adminService(t, c1.api(), adminOld).RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "rotate"}); status.Code(err) != codes.InvalidArgument ||
			!strings.Contains(err.Error(), "phase") {
			t.Errorf("an unknown phase: %v, want InvalidArgument naming the field", err)
		}
		if _, err := adminService(t, c1.api(), adminOld).RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "finish"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("finish without a rotation: %v, want FailedPrecondition", err)
		}
	})

	admin := adminService(t, c.nodes[2].api(), adminOld) // any control node will do
	started, err := admin.RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "start"})
	if err != nil {
		t.Fatal(err)
	}
	if started.Rotation != rotationStarted || len(started.TrustedPins) != 2 || started.SignerPin == c.ca.Pin() || started.TrustedPins[1] != c.ca.Pin() {
		t.Fatalf("after start: rotation %q, signer %s, trusted %v; want started, a new signer, the old CA trusted beside it", started.Rotation, started.SignerPin, started.TrustedPins)
	}
	if !hasAudit(t, c.nodes[2].cfg.DataDir, pki.AdminUser, "rotate", "CA", "OK") {
		t.Error("rotate start left no audit line")
	}
	if _, err := admin.RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "start"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a second start: %v, want FailedPrecondition", err)
	}
	// Every control node puts the new CA in force and saves it.
	var newCA *pki.CA
	for _, n := range c.nodes {
		testutil.WaitFor(t, 5*time.Second, n.name+" to trust the new CA beside the old", func() bool {
			b, err := pki.LoadBundle(filepath.Join(n.cfg.DataDir, PKIDir))
			if err != nil || b.Signer().Pin() != started.SignerPin || len(b.Trusted()) != 2 {
				return false
			}
			newCA = b.Signer()
			return true
		})
	}
	bothRoots := x509.NewCertPool()
	bothRoots.AddCert(newCA.Cert)
	bothRoots.AddCert(c.ca.Cert)
	newRoots := x509.NewCertPool()
	newRoots.AddCert(newCA.Cert)
	viewerNew := func() *tls.Config {
		kp, _, err := newCA.Issue(pki.IssueOptions{Identity: must(pki.UserIdentity("carol", pki.RoleViewer))})
		if err != nil {
			t.Fatal(err)
		}
		return tlsWith(must(kp.TLS()), bothRoots)
	}()

	t.Run("BothCAsServedDuringTheRotation", func(t *testing.T) {
		for _, n := range c.nodes {
			for name, tc := range map[string]*tls.Config{"old-CA viewer": viewerOld, "new-CA viewer": viewerNew, "old-CA admin": adminOld} {
				if err := apiServed(t, n.api(), tc); err != nil {
					t.Errorf("%s: the %s refused during the rotation: %v", n.name, name, err)
				}
			}
			if kv, in, rf := probeStorePort(t, n.store(), c2Old); kv != nil || in != nil || rf != nil {
				t.Errorf("%s: member c2 (old-CA certificate) not served on the store port during the rotation: %v %v %v", n.name, kv, in, rf)
			}
		}
		// A token made now pins the new CA (and joins, against a bundle
		// holding both).
		tok, err := admin.CreateToken(ctxShort(t), &adminv1.CreateTokenRequest{Role: "worker"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok.Token, "skiff1."+started.SignerPin+".") {
			t.Errorf("token made during the rotation pins %s, want the new CA %s", strings.Split(tok.Token, ".")[1], started.SignerPin)
		}
	})

	var workerNew tls.Certificate
	t.Run("FinishWaitsForTheWorker", func(t *testing.T) {
		st, err := admin.RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "status"})
		if err != nil {
			t.Fatal(err)
		}
		all, blocking := pending(st)
		if !slices.Contains(blocking, "node:w1") {
			t.Fatalf("status during the rotation: pending %v, blocking %v; want node:w1 blocking", all, blocking)
		}
		if _, err := admin.RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "finish"}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "node:w1") {
			t.Fatalf("finish while w1 holds an old certificate: %v, want FailedPrecondition naming node:w1", err)
		}
		// The worker renews (as its Renewer would when due), trusting only
		// the old CA: the control nodes still serve with it, and the answer
		// carries both CAs.
		var cas *x509.CertPool
		workerNew, cas = renewAt(t, c.nodes[1].api(), oldRoots, workerOld)
		if workerNew.Leaf.CheckSignatureFrom(newCA.Cert) != nil {
			t.Fatalf("the worker's renewal during the rotation was signed by %q, want the new CA", workerNew.Leaf.Issuer.CommonName)
		}
		if _, err := workerNew.Leaf.Verify(x509.VerifyOptions{Roots: cas, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("the renewal's CA list does not hold the new CA: %v", err)
		}
		// w2 renews by itself, having seen the new CA.
		testutil.WaitFor(t, 10*time.Second, "no worker left on the old CA (w2 renews by itself)", func() bool {
			st, err = admin.RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "status"})
			_, blocking := pending(st)
			return err == nil && len(blocking) == 0
		})
		if got := w2Conf().Certificates[0].Leaf; got.CheckSignatureFrom(newCA.Cert) != nil {
			t.Fatalf("w2's node.conf certificate is from %q after its renewal, want the new CA", got.Issuer.CommonName)
		}
	})

	// An open connection of the old-CA viewer, to be cut at finish.
	openOld := apiv1.NewAPIClient(grpcConn(t, c.nodes[2].api(), viewerOld, nil))
	if _, err := openOld.List(ctxShort(t), &apiv1.ListRequest{Kind: "Namespace"}); err != nil {
		t.Fatalf("old-CA viewer before finish: %v", err)
	}
	// Finish cuts every old-CA connection, the caller's own too: an old-CA
	// admin is told to use the rewritten admin.conf instead.
	if _, err := adminService(t, c1.api(), adminOld).RotateCA(ctxShort(t), &adminv1.RotateCARequest{Phase: "finish"}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "admin.conf") {
		t.Fatalf("finish by an old-CA admin: %v; want FailedPrecondition pointing at admin.conf", err)
	}
	var adminNew *tls.Config
	testutil.WaitFor(t, 20*time.Second, "c1's admin.conf rewritten with a new-CA certificate", func() bool {
		cc, err := client.LoadConfig(filepath.Join(c1.cfg.DataDir, AdminConfigFile))
		if err != nil {
			return false
		}
		tc, err := cc.TLS()
		if err != nil || len(tc.Certificates) == 0 {
			return false
		}
		leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
		if err != nil || leaf.CheckSignatureFrom(newCA.Cert) != nil {
			return false
		}
		adminNew = tc
		return true
	})
	begin := time.Now()
	done, err := adminService(t, c1.api(), adminNew).RotateCA(context.Background(), &adminv1.RotateCARequest{Phase: "finish"})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	t.Logf("finish took %s", time.Since(begin).Round(time.Millisecond))
	if done.Rotation != "" || len(done.TrustedPins) != 1 || done.TrustedPins[0] != started.SignerPin {
		t.Fatalf("after finish: rotation %q, trusted %v; want only the new CA %s", done.Rotation, done.TrustedPins, started.SignerPin)
	}

	t.Run("OldCARefusedEverywhere", func(t *testing.T) {
		testutil.WaitFor(t, 5*time.Second, "the old-CA viewer's open connection to be cut", func() bool {
			_, err := openOld.List(ctxShort(t), &apiv1.ListRequest{Kind: "Namespace"})
			return err != nil
		})
		for _, n := range c.nodes {
			testutil.WaitFor(t, 5*time.Second, n.name+" to refuse old-CA certificates on the API port", func() bool {
				return apiServed(t, n.api(), viewerOld) != nil && apiServed(t, n.api(), adminOld) != nil && apiServed(t, n.api(), tlsWith(workerOld, newRoots)) != nil
			})
			if kv, in, rf := probeStorePort(t, n.store(), tlsWith(c2Old.Certificates[0], newRoots)); !refusedEverywhere(kv, in, rf) {
				t.Errorf("%s: c2's old-CA certificate served on the store port after finish: %v %v %v", n.name, kv, in, rf)
			}
			// Control nodes renewed at finish and serve with the new CA.
			if kv, in, rf := probeStorePort(t, n.store(), tlsWith(c.nodes[1].keyPair(t), newRoots)); kv != nil || in != nil || rf != nil {
				t.Errorf("%s: member c2 (new-CA certificate) not served on the store port: %v %v %v", n.name, kv, in, rf)
			}
			if err := apiServed(t, n.api(), tlsWith(w2Old.Certificates[0], newRoots)); err == nil {
				t.Errorf("%s: w2's certificate from before the rotation served after finish", n.name)
			}
			for name, tc := range map[string]*tls.Config{"new-CA viewer": tlsWith(viewerNew.Certificates[0], newRoots), "renewed worker": tlsWith(workerNew, newRoots),
				"w2's node.conf as it is now": w2Conf()} {
				if err := apiServed(t, n.api(), tc); err != nil {
					t.Errorf("%s: the %s refused after finish: %v", n.name, name, err)
				}
			}
		}
	})

	t.Run("ClusterWorksWithTheNewCA", func(t *testing.T) {
		// Control nodes rewrote admin.conf with the new CA.
		cc, err := client.LoadConfig(filepath.Join(c1.cfg.DataDir, AdminConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cc.TLS()
		if err != nil {
			t.Fatal(err)
		}
		if tc.Certificates[0].Leaf == nil {
			tc.Certificates[0].Leaf, _ = x509.ParseCertificate(tc.Certificates[0].Certificate[0])
		}
		if tc.Certificates[0].Leaf.CheckSignatureFrom(newCA.Cert) != nil {
			t.Fatalf("admin.conf after finish holds a certificate of %q, want the new CA", tc.Certificates[0].Leaf.Issuer.CommonName)
		}
		testutil.WaitFor(t, 20*time.Second, "three healthy voters after the rotation", func() bool {
			resp, err := adminService(t, c1.api(), tc).ListMembers(ctxShort(t), &adminv1.ListMembersRequest{})
			if err != nil || len(resp.Members) != 3 {
				return false
			}
			for _, m := range resp.Members {
				if !m.Healthy {
					return false
				}
			}
			return true
		})
		if _, err := adminService(t, c1.api(), tc).CreateToken(ctxShort(t), &adminv1.CreateTokenRequest{Role: "worker"}); err != nil {
			t.Fatalf("a write after the rotation: %v", err)
		}
	})
}
