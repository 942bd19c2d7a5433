package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Init creates a cluster with this machine as its first control node and
// runs it until ctx ends. On a data dir that already holds a node it
// resumes that node instead (never bootstrapping twice).
func Init(ctx context.Context, cfg Config) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	st, err := LoadState(cfg.DataDir)
	switch {
	case err == nil:
		if st.Role != RoleControl {
			return fmt.Errorf("%s holds worker node %q: start it with `ctl join`, or use another --data-dir for a new cluster", cfg.DataDir, st.Name)
		}
		if err := cfg.checkResume(st); err != nil {
			return err
		}
		if st.CreatedBy == "init" && !st.Bootstrapped {
			// A first `ctl init` stopped before the cluster formed: finish it.
			return initFresh(ctx, cfg, st)
		}
		return resume(ctx, cfg, st)
	case !errors.Is(err, ErrNoState):
		return err
	}
	if _, err := cfg.clusterNetwork(); err != nil {
		return err
	}
	if err := checkFresh(cfg.DataDir); err != nil {
		return err
	}
	if st, err = cfg.newState(RoleControl, "init"); err != nil {
		return err
	}
	if err := saveState(cfg.DataDir, st); err != nil {
		return err
	}
	return initFresh(ctx, cfg, st)
}

// initFresh makes the CA and certificates (keeping any made by an
// interrupted first run), bootstraps the store and prints join commands.
func initFresh(ctx context.Context, cfg Config, st State) error {
	dir := filepath.Join(cfg.DataDir, PKIDir)
	ca, _, err := pki.LoadOrCreateCA(dir, pki.DefaultCAConfig())
	if err != nil {
		return err
	}
	if !fileExists(filepath.Join(dir, controlKeyPair+".crt")) {
		id, err := pki.ControlIdentity(st.Name)
		if err != nil {
			return err
		}
		kp, _, err := ca.Issue(pki.IssueOptions{Identity: id, Lifetime: cfg.NodeCertLifetime, Server: true,
			Hosts: append([]string{st.Advertise, "127.0.0.1", "localhost"}, APIServiceSANs...)})
		if err != nil {
			return err
		}
		if err := pki.SaveKeyPair(dir, controlKeyPair, kp); err != nil {
			return err
		}
	}
	adminConf, err := writeAdminConfig(cfg.DataDir, ca, ca.CertPEM, []string{st.APIAddress()}, cfg.UserCertLifetime)
	if err != nil {
		return err
	}
	c, err := startControl(cfg, st, true)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Run(ctx, func(ctx context.Context, c *Control) error {
		if err := retry(ctx, 60*time.Second, func(ctx context.Context) error { return storeClusterNetwork(ctx, c.Store, cfg) }); err != nil {
			return fmt.Errorf("store the cluster network settings: %w", err)
		}
		return printJoinCommands(ctx, c, adminConf)
	})
}

func resume(ctx context.Context, cfg Config, st State) error {
	switch st.Role {
	case RoleControl:
		c, err := startControl(cfg, st, false)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Run(ctx, nil)
	case RoleWorker:
		return runWorker(ctx, cfg, st)
	}
	return fmt.Errorf("unknown role %q", st.Role)
}

// printJoinCommands waits for the new cluster to take writes, makes one
// control and one worker token and prints how to use them.
func printJoinCommands(ctx context.Context, c *Control, adminConf string) error {
	var ctl, wrk pki.Token
	err := retry(ctx, 60*time.Second, func(ctx context.Context) error {
		var err error
		if ctl.ID == "" {
			if ctl, _, err = c.Tokens.Create(ctx, pki.CreateTokenOptions{Role: pki.JoinControl, Description: "printed by ctl init"}); err != nil {
				return err
			}
		}
		wrk, _, err = c.Tokens.Create(ctx, pki.CreateTokenOptions{Role: pki.JoinWorker, Description: "printed by ctl init"})
		return err
	})
	if err != nil {
		return fmt.Errorf("create the first join tokens: %w", err)
	}
	addr := c.state.APIAddress()
	fmt.Fprintf(c.cfg.Out, `
Cluster created. Admin client config: %s
  export SKIFF_CONFIG=%s

Add control nodes (3 or 5 in all) by running on each:
  ctl join --control --token %s %s

Add workers by running on each:
  ctl join --token %s %s

The tokens expire in %s; make new ones with `+"`ctl token create [--role worker]`"+`.
`, adminConf, adminConf, ctl, addr, wrk, addr, pki.DefaultTokensConfig().DefaultTTL)
	return nil
}

// retry runs f until it succeeds, ctx ends or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
