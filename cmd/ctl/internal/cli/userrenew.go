package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/proto/client"
)

// userRenewCmd is `ctl user renew`: the holder of a user certificate
// renews it with the certificate itself, before it expires. No admin is
// needed; a revoked or expired certificate cannot renew (the call is
// authenticated with it).
func (o *options) userRenewCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "renew",
		Short: "Renew the certificate of the client config in use (before it expires)",
		Long: `Renew the certificate of the client config in use (--config) with a new
key, authenticating with the current certificate, and write the new
certificate and key back into the same config. The identity and role stay;
the new certificate lives as long as the old one was issued for (at most
the cluster's user certificate lifetime, 90 days by default). Run it any
time before the certificate expires; once expired, ask an admin for a new
one with ` + "`ctl user create`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.renewUser(cmd.Context())
		},
	}
}

func (o *options) renewUser(parent context.Context) error {
	path := o.configPath
	if path == "" {
		path = client.DefaultConfigPath()
	}
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	tc, err := cfg.TLS()
	if err != nil {
		return err
	}
	cur := tc.Certificates[0]
	if cur.Leaf == nil {
		if cur.Leaf, err = x509.ParseCertificate(cur.Certificate[0]); err != nil {
			return fmt.Errorf("%s: client certificate: %w", path, err)
		}
	}
	id, err := pki.IdentityFromCert(cur.Leaf)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if id.Role != pki.RoleAdmin && id.Role != pki.RoleViewer {
		return fmt.Errorf("%s holds the certificate of %s: nodes renew their own certificates while they run; `ctl user renew` is for user configs", path, id)
	}
	if now := time.Now(); !now.Before(cur.Leaf.NotAfter) {
		return fmt.Errorf("the certificate of %s in %s expired at %s: it can no longer renew itself; ask an admin for a new config (`ctl user create`)",
			id.User, path, cur.Leaf.NotAfter.Local().Format(time.RFC3339))
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	jc := pki.DefaultJoinClientConfig()
	jc.Timeout = o.timeout
	joiner := pki.NewJoinClient(jc)
	var errs []error
	for _, server := range cfg.Servers {
		ctx, cancel := o.ctx(parent)
		kp, cas, err := joiner.RenewWithCAs(ctx, server, tc.RootCAs, pki.StaticCert{Cert: cur}, key)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := saveUserKeyPair(cfg, path, kp, cas); err != nil {
			return err
		}
		next, err := kp.TLS()
		if err != nil {
			return err
		}
		fmt.Fprintf(o.streams.Out, "certificate of %s renewed: valid until %s (%s)\n", id.User, next.Leaf.NotAfter.Local().Format(time.RFC3339), path)
		return nil
	}
	return fmt.Errorf("renew the certificate of %s: %w", id.User, errors.Join(errs...))
}

// saveUserKeyPair writes a renewed pair where the config keeps it: inline,
// or in the files it names (relative to the config's folder). cas, the CAs
// the renewal's answer says to trust (the new CA during a CA rotation),
// replaces the config's CA data or file when given.
func saveUserKeyPair(cfg *client.Config, path string, kp pki.KeyPair, cas []byte) error {
	if cfg.ClientCertificateData != "" || cfg.ClientKeyData != "" {
		cfg.ClientCertificate, cfg.ClientKey = "", ""
		cfg.ClientCertificateData, cfg.ClientKeyData = b64(kp.CertPEM), b64(kp.KeyPEM)
		if len(cas) > 0 {
			cfg.CertificateAuthority, cfg.CertificateAuthorityData = "", b64(cas)
		}
		// Keep the servers of the file, not a --server override.
		onDisk, err := client.LoadConfig(path)
		if err != nil {
			return err
		}
		cfg.Servers = onDisk.Servers
		return cfg.Save(path)
	}
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(path), p)
	}
	if len(cas) > 0 {
		if cfg.CertificateAuthority != "" {
			if err := pki.WriteFileAtomic(resolve(cfg.CertificateAuthority), cas, 0o644); err != nil {
				return err
			}
		} else {
			onDisk, err := client.LoadConfig(path)
			if err != nil {
				return err
			}
			onDisk.CertificateAuthorityData = b64(cas)
			if err := onDisk.Save(path); err != nil {
				return err
			}
		}
	}
	// Each write is atomic; a crash between them leaves a pair that does
	// not match, which the next load reports by name.
	if err := pki.WriteFileAtomic(resolve(cfg.ClientKey), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return pki.WriteFileAtomic(resolve(cfg.ClientCertificate), kp.CertPEM, 0o644)
}
