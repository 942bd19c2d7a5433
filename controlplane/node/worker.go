package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// runWorker holds a worker's certificate (renewing it through the join
// service) and keeps its Node object registered. The agent (pods) comes in
// a later issue and will take over from here.
func runWorker(ctx context.Context, cfg Config, st State) error {
	log := cfg.Logger.With("node", st.Name)
	dir := filepath.Join(cfg.DataDir, PKIDir)
	ca, err := pki.LoadCA(dir)
	if err != nil {
		return err
	}
	kp, err := pki.LoadKeyPair(dir, workerKeyPair)
	if err != nil {
		return fmt.Errorf("worker key pair in %s: %w", dir, err)
	}
	cert, err := kp.TLS()
	if err != nil {
		return err
	}
	if len(st.Servers) == 0 {
		return fmt.Errorf("%s lists no control node API addresses (servers)", filepath.Join(cfg.DataDir, StateFile))
	}
	pool := ca.Pool()
	jc := pki.DefaultJoinClientConfig()
	jc.Logger = log
	joiner := pki.NewJoinClient(jc)
	rc := cfg.Renew
	rc.Initial, rc.Logger = cert, log
	var r *pki.Renewer
	rc.Renew = func(ctx context.Context) (tls.Certificate, error) {
		key, err := pki.NewKey()
		if err != nil {
			return tls.Certificate{}, err
		}
		var errs []error
		for _, addr := range st.Servers {
			next, err := joiner.Renew(ctx, addr, pool, r, key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := pki.SaveKeyPair(dir, workerKeyPair, next); err != nil {
				return tls.Certificate{}, err
			}
			return next.TLS()
		}
		return tls.Certificate{}, errors.Join(errs...)
	}
	if r, err = pki.NewRenewer(rc); err != nil {
		return err
	}
	o := client.DefaultOptions()
	o.Servers, o.Logger = st.Servers, log
	o.TLS = pki.ClientTLSConfig(pool, r, "")
	cl, err := client.New(o)
	if err != nil {
		return err
	}
	defer cl.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// gossipErr stays nil (never ready) without gossip.
	var gossipErr chan error
	if cfg.Membership != nil {
		key, err := workerGossipKey(cfg.DataDir)(ctx)
		if err != nil {
			return fmt.Errorf("%w (joined before the cluster handed out gossip keys? run without gossip)", err)
		}
		info := MemberInfo{Name: st.Name, Role: MemberRoleWorker, Advertise: st.Advertise, BindAddress: st.BindAddress,
			Seeds: func(context.Context) ([]string, error) { return st.Servers, nil },
			PodCIDR: func(ctx context.Context) (string, error) {
				n, err := client.Get[*apiv1.Node](ctx, cl, "", st.Name)
				if status.Code(err) == codes.NotFound {
					return "", nil
				}
				return n.GetSpec().GetPodCIDR(), err
			}}
		gossipErr = make(chan error, 1)
		go func() {
			gossipErr <- runMembership(ctx, cfg.Membership, &memberView{}, info, func(context.Context) ([]byte, error) { return key, nil })
		}()
		defer func() {
			if gossipErr != nil { // not yet read (below)
				cancel()
				<-gossipErr
			}
		}()
	}
	renewErr := make(chan error, 1)
	go func() { renewErr <- r.Run(ctx) }()
	err = retry(ctx, 365*24*time.Hour, func(ctx context.Context) error {
		_, err := client.Create(ctx, cl, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: st.Name}})
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		if err != nil {
			log.Warn("registering the Node object", "err", err)
		}
		return err
	})
	if err != nil {
		cancel()
		<-renewErr
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("register Node %q: %w", st.Name, err)
	}
	fmt.Fprintf(cfg.Out, "worker node %s registered with the cluster (%v); holding its certificate until the agent runs here\n", st.Name, st.Servers)
	select {
	case <-ctx.Done():
	case err = <-renewErr:
		return err
	case err = <-gossipErr:
		gossipErr = nil
		cancel()
		<-renewErr
		return fmt.Errorf("gossip membership: %w", err)
	}
	return <-renewErr
}
