package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/proto/client"
)

// ErrNodeNameTaken: the cluster already has a node of this name (two
// machines with the same host name); the joining one must pass --name.
var ErrNodeNameTaken = errors.New("node name taken")

// joinError says what to do about a refused or failed join, by the gRPC
// code the join service answered with.
func joinError(addr, name string, err error) error {
	if errors.Is(err, pki.ErrNameInUse) || status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("%w: the cluster already has a live node named %q (another machine with the same host name?): "+
			"pass --name with a name of its own, or re-join that machine with a token from `ctl token create --node %s` (%w)",
			ErrNodeNameTaken, name, name, err)
	}
	if status.Code(err) == codes.Unavailable {
		return fmt.Errorf("cannot reach the control node at %s: %s", addr, client.Reason(err))
	}
	return err
}

// JoinOptions say how to join.
type JoinOptions struct {
	// Address is host:port of any control node's API port.
	Address string
	// Token is the whole join token (skiff1.<pin>.<id>.<secret>).
	Token string
	// Control joins as a control node, else as a worker.
	Control bool
}

// Join makes this machine a node of the cluster behind opts.Address and
// runs it until ctx ends. On a data dir that already holds a node it
// resumes that node; the token is then not used.
func Join(ctx context.Context, cfg Config, opts JoinOptions) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	role := RoleWorker
	if opts.Control {
		role = RoleControl
	}
	st, err := LoadState(cfg.DataDir)
	switch {
	case err == nil:
		if st.Role != role {
			if st.Role == RoleControl {
				return fmt.Errorf("%s holds control node %q: add --control to resume it", cfg.DataDir, st.Name)
			}
			return fmt.Errorf("%s holds worker node %q: drop --control to resume it, or use another --data-dir", cfg.DataDir, st.Name)
		}
		if err := cfg.checkResume(st); err != nil {
			return err
		}
		cfg.Logger.Info("data dir holds a node already: resuming it (the token is not used)", "node", st.Name, "role", st.Role)
		return resume(ctx, cfg, st)
	case !errors.Is(err, ErrNoState):
		return err
	}
	if opts.Address == "" {
		return fmt.Errorf("the address (host:port) of a control node's API port is required")
	}
	opts.Address = client.WithDefaultPort(opts.Address) // 10.0.0.1 means 10.0.0.1:7443
	tok, err := pki.ParseToken(opts.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	if err := checkFresh(cfg.DataDir); err != nil {
		return err
	}
	if st, err = cfg.newState(role, "join"); err != nil {
		return err
	}
	jc := pki.DefaultJoinClientConfig()
	jc.Logger = cfg.Logger
	joiner := pki.NewJoinClient(jc)
	req := pki.JoinRequest{Address: opts.Address, Token: tok, NodeName: st.Name}
	if role == RoleControl {
		// A control node also serves local callers (ctl on the machine)
		// and pods calling the kubernetes Service.
		req.Role, req.AdvertiseAddress, req.RaftAddress = pki.JoinControl, st.APIAddress(), st.RaftAddress()
		req.ExtraSANs = append([]string{"127.0.0.1", "localhost"}, APIServiceSANs...)
	} else {
		// A worker serves nothing under its certificate (client
		// authentication only); the join service names at most this
		// address in it, and only if the join comes from it.
		req.Role, req.AdvertiseAddress = pki.JoinWorker, hostPort(st.Advertise, orDefault(cfg.AgentPort, DefaultAgentPort))
	}
	res, err := joiner.Join(ctx, req)
	if err != nil {
		return joinError(opts.Address, st.Name, err)
	}
	if role == RoleControl {
		return joinedControl(ctx, cfg, st, res)
	}
	return joinedWorker(ctx, cfg, st, opts.Address, res)
}

func joinedControl(ctx context.Context, cfg Config, st State, res *pki.JoinResult) error {
	dir := filepath.Join(cfg.DataDir, PKIDir)
	// The bundle's first CA is the signer, whose key came with it; the
	// others are trusted beside it (a CA rotation in progress).
	ca, err := pki.ParseCA(res.CABundlePEM, res.Control.CAKeyPEM)
	if err != nil {
		return err
	}
	all, err := pki.ParseCertificatesPEM(res.CABundlePEM)
	if err != nil {
		return err
	}
	bundle, err := pki.NewBundle(ca, all[1:]...)
	if err != nil {
		return err
	}
	if err := bundle.Save(dir); err != nil {
		return err
	}
	if err := pki.SaveKeyPair(dir, controlKeyPair, res.KeyPair); err != nil {
		return err
	}
	for _, m := range res.Control.Members {
		st.JoinMembers = append(st.JoinMembers, m.ID)
	}
	servers := appendMissing(res.APIAddresses, st.APIAddress())
	if _, err := writeAdminConfig(cfg.DataDir, ca, bundle.PEM(), servers, cfg.UserCertLifetime); err != nil {
		return err
	}
	if err := saveState(cfg.DataDir, st); err != nil {
		return err
	}
	voter := "a non-voter (the leader promotes it when that keeps the voter count odd)"
	if res.Control.Voter {
		voter = "a voter"
	}
	fmt.Fprintf(cfg.Out, "joined the cluster as control node %s, %s\n", st.Name, voter)
	return resume(ctx, cfg, st)
}

func joinedWorker(ctx context.Context, cfg Config, st State, addr string, res *pki.JoinResult) error {
	dir := filepath.Join(cfg.DataDir, PKIDir)
	if err := (&pki.CA{Cert: res.CA, CertPEM: res.CABundlePEM}).Save(dir); err != nil {
		return err
	}
	if err := pki.SaveKeyPair(dir, workerKeyPair, res.KeyPair); err != nil {
		return err
	}
	if len(res.GossipKey) > 0 {
		if err := pki.WriteFileAtomic(filepath.Join(dir, GossipKeyFile), res.GossipKey, 0o600); err != nil {
			return err
		}
	}
	st.Servers = appendMissing(res.APIAddresses, addr)
	if err := writeNodeConfig(cfg.DataDir, st.Servers); err != nil {
		return err
	}
	if err := saveState(cfg.DataDir, st); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "joined the cluster as worker node %s\n", st.Name)
	return resume(ctx, cfg, st)
}

// writeNodeConfig is the worker's client config; it names the key pair
// files so that renewals take effect without rewriting it.
func writeNodeConfig(dataDir string, servers []string) error {
	cc := &client.Config{Servers: servers,
		CertificateAuthority: filepath.Join(PKIDir, pki.CACertFile),
		ClientCertificate:    filepath.Join(PKIDir, workerKeyPair+".crt"),
		ClientKey:            filepath.Join(PKIDir, workerKeyPair+".key")}
	return cc.Save(filepath.Join(dataDir, NodeConfigFile))
}

func appendMissing(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(append([]string(nil), list...), s)
}
