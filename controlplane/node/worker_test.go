package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func issue(t *testing.T, ca *pki.CA, opts pki.IssueOptions) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	kp, leaf, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c, leaf
}

// The client a worker hands its agent presents the certificate the
// renewer holds at each handshake and trusts the CAs the worker trusts at
// each handshake: after a renewal, and after a CA rotation brings a new
// CA, the same client (no restart, no new options) uses them.
func TestWorkerClientFollowsRenewalAndNewCAs(t *testing.T) {
	ca1, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := pki.NewBundle(ca1)
	if err != nil {
		t.Fatal(err)
	}
	nodeID, _ := pki.NodeIdentity("w1")
	first, firstLeaf := issue(t, ca1, pki.IssueOptions{Identity: nodeID})
	rc := pki.DefaultRenewerConfig()
	rc.Initial = first
	rc.Renew = func(context.Context) (tls.Certificate, error) {
		c, _ := issue(t, ca1, pki.IssueOptions{Identity: nodeID})
		return c, nil
	}
	r, err := pki.NewRenewer(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	o := workerClientOptions([]string{"127.0.0.1:1"}, bundle, r, nil)
	controlID, _ := pki.ControlIdentity("c1")
	srv1, _ := issue(t, ca1, pki.IssueOptions{Identity: controlID, Server: true, Hosts: []string{"127.0.0.1"}})
	addr1 := testutil.SerialServer(t, srv1, ca1.Pool())

	got, err := testutil.DialSerial(addr1, o.TLS)
	if err != nil || got != firstLeaf.SerialNumber.String() {
		t.Fatalf("first handshake presented serial %q (%v), want %s", got, err, firstLeaf.SerialNumber)
	}
	r.RenewNow()
	testutil.WaitFor(t, 10*time.Second, "the renewer to hold a new certificate", func() bool {
		return r.Current().Leaf != nil && r.Current().Leaf.SerialNumber.Cmp(firstLeaf.SerialNumber) != 0
	})
	renewed := r.Current().Leaf.SerialNumber.String()
	if got, err = testutil.DialSerial(addr1, o.TLS); err != nil || got != renewed {
		t.Fatalf("after renewal the same client presented serial %q (%v), want the renewed %s", got, err, renewed)
	}

	// A control node already serving with a certificate of a new CA: not
	// trusted until the worker learns the CA, then trusted by the same client.
	ca2, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv2, _ := issue(t, ca2, pki.IssueOptions{Identity: controlID, Server: true, Hosts: []string{"127.0.0.1"}})
	addr2 := testutil.SerialServer(t, srv2, ca1.Pool())
	var verr *tls.CertificateVerificationError
	if _, err := testutil.DialSerial(addr2, o.TLS); !errors.As(err, &verr) {
		t.Fatalf("a server of an unknown CA: got %v, want a certificate verification error", err)
	}
	rotated, err := pki.NewBundle(ca2, ca1.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := trustCAs(bundle, t.TempDir(), rotated.PEM()); err != nil {
		t.Fatal(err)
	}
	if got, err = testutil.DialSerial(addr2, o.TLS); err != nil || got != renewed {
		t.Fatalf("after the new CA was trusted: serial %q, %v; want a handshake presenting %s", got, err, renewed)
	}
}

// ctl join (worker) runs the worker's services (the agent) in its own
// process once the Node is registered, with a client that is node:<name>;
// running it again on the same data dir — no token, no address — resumes
// the same node and runs them again, never joining anew.
func TestWorkerRunsServicesAndResumesWithoutToken(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, filepath.Join(dir, "c1"), "c1")
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var token, addr string
	re := regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			token, addr = m[1], m[2]
		}
		return m != nil
	})

	var mu sync.Mutex
	var runs []WorkerEnv
	wcfg, wout := testConfig(t, filepath.Join(dir, "w1"), "w1")
	wcfg.Worker = func(ctx context.Context, env WorkerEnv) error {
		// What the agent does first: read its own Node with its client.
		if _, err := client.Get[*apiv1.Node](ctx, env.Client, "", env.Name); err != nil {
			return err
		}
		mu.Lock()
		runs = append(runs, env)
		mu.Unlock()
		<-ctx.Done()
		return nil
	}
	nruns := func() int { mu.Lock(); defer mu.Unlock(); return len(runs) }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Join(ctx, wcfg, JoinOptions{Address: addr, Token: token}) }()
	testutil.WaitFor(t, 30*time.Second, "the worker's services to run", func() bool { return nruns() == 1 })
	if !strings.Contains(wout.String(), "worker node w1 registered with the cluster") {
		t.Errorf("join output %q does not say the node registered", wout.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker stopped with %v", err)
	}
	serialBefore := serial(t, filepath.Join(wcfg.DataDir, PKIDir, workerKeyPair+".crt"))

	// Resume: the same data dir, no token, no address.
	runInBackground(t, func(ctx context.Context) error { return Join(ctx, wcfg, JoinOptions{}) })
	testutil.WaitFor(t, 30*time.Second, "the resumed worker's services to run", func() bool { return nruns() == 2 })
	mu.Lock()
	defer mu.Unlock()
	for i, env := range runs {
		if env.Name != "w1" || env.DataDir != wcfg.DataDir {
			t.Errorf("run %d: services got node %q, data dir %q; want w1, %s", i, env.Name, env.DataDir, wcfg.DataDir)
		}
	}
	if s := serial(t, filepath.Join(wcfg.DataDir, PKIDir, workerKeyPair+".crt")); s != serialBefore {
		t.Errorf("resuming replaced the worker certificate (%s -> %s): it joined anew", serialBefore, s)
	}
}
