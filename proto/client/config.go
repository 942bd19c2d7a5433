package client

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"sigs.k8s.io/yaml"
)

// ErrConfig: the client config file is missing or wrong.
var ErrConfig = errors.New("client config")

// Config is the client config file (YAML), written by `ctl init` for the
// admin and by `ctl join` for nodes:
//
//	servers: [10.0.0.1:7443, 10.0.0.2:7443, 10.0.0.3:7443]
//	certificate-authority: ca.crt        # or certificate-authority-data: <base64 PEM>
//	client-certificate: admin.crt        # or client-certificate-data
//	client-key: admin.key                # or client-key-data
//	namespace: default
//
// Relative paths are relative to the config file's directory.
type Config struct {
	Servers []string `json:"servers"`
	// ServerName overrides the name verified in server certificates
	// (default: the host of the address dialed).
	ServerName               string `json:"server-name,omitempty"`
	CertificateAuthority     string `json:"certificate-authority,omitempty"`
	CertificateAuthorityData string `json:"certificate-authority-data,omitempty"`
	ClientCertificate        string `json:"client-certificate,omitempty"`
	ClientCertificateData    string `json:"client-certificate-data,omitempty"`
	ClientKey                string `json:"client-key,omitempty"`
	ClientKeyData            string `json:"client-key-data,omitempty"`
	// TokenFile, instead of a client certificate, is a file holding a
	// service account token, read again on every call (the node replaces
	// a pod's token before it expires). InClusterConfig sets it.
	TokenFile string `json:"token-file,omitempty"`
	// Namespace is the default namespace of namespaced requests.
	Namespace string `json:"namespace,omitempty"`
	// CurrentContext and Contexts let one file hold several clusters
	// (contexts.go); a file without contexts is one cluster, as before.
	CurrentContext string         `json:"current-context,omitempty"`
	Contexts       []NamedContext `json:"contexts,omitempty"`

	dir string // directory of the file it was loaded from
	// file is the whole file when this config is one of its contexts
	// (named context): Save writes the context back into it.
	file    *Config
	context string
}

// ConfigEnv names the environment variable that points at the config file.
const ConfigEnv = "SKIFF_CONFIG"

// DefaultConfigPath is $SKIFF_CONFIG, else ~/.skiff/config.
func DefaultConfigPath() string {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".skiff", "config")
	}
	return filepath.Join(home, ".skiff", "config")
}

// LoadConfig reads a config file; unknown keys are an error naming them.
// A file with contexts gives its current context.
func LoadConfig(path string) (*Config, error) { return LoadConfigContext(path, "") }

// LoadConfigFile reads a config file as it is, contexts and all (for
// `ctl config`); it checks the file's structure, not its contexts.
func LoadConfigFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	c.dir = filepath.Dir(path)
	return &c, nil
}

// Validate checks the config names at least one server and its credentials.
func (c *Config) Validate() error {
	switch {
	case len(c.Servers) == 0:
		return fmt.Errorf("%w: servers: at least one server address is required", ErrConfig)
	case c.CertificateAuthority == "" && c.CertificateAuthorityData == "":
		return fmt.Errorf("%w: certificate-authority or certificate-authority-data is required", ErrConfig)
	case c.TokenFile != "":
		return nil // a token instead of a certificate
	case c.ClientCertificate == "" && c.ClientCertificateData == "":
		return fmt.Errorf("%w: client-certificate or client-certificate-data (or token-file) is required", ErrConfig)
	case c.ClientKey == "" && c.ClientKeyData == "":
		return fmt.Errorf("%w: client-key or client-key-data is required", ErrConfig)
	}
	return nil
}

// Save writes the config (mode 0600: it may carry a private key inline)
// atomically: a reader sees the old file or the new one, never a part (a
// control node rewrites its admin.conf when the control nodes change).
func (c *Config) Save(path string) error {
	if c.file != nil {
		return c.saveContext(path)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrConfig, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (c *Config) material(field, path, data string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s-data: not base64: %v", ErrConfig, field, err)
		}
		return b, nil
	}
	if !filepath.IsAbs(path) && c.dir != "" {
		path = filepath.Join(c.dir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, field, err)
	}
	return b, nil
}

// TLS builds the mutual-TLS client config; with a token-file and no
// client certificate, one that verifies the server only.
func (c *Config) TLS() (*tls.Config, error) {
	caPEM, err := c.material("certificate-authority", c.CertificateAuthority, c.CertificateAuthorityData)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: certificate-authority: no PEM certificate found", ErrConfig)
	}
	if c.TokenFile != "" && c.ClientCertificate == "" && c.ClientCertificateData == "" {
		return &tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS13, VerifyConnection: RefuseWorkerServer}, nil
	}
	certPEM, err := c.material("client-certificate", c.ClientCertificate, c.ClientCertificateData)
	if err != nil {
		return nil, err
	}
	keyPEM, err := c.material("client-key", c.ClientKey, c.ClientKeyData)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: client certificate/key: %w", ErrConfig, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: c.ServerName, MinVersion: tls.VersionTLS13,
		VerifyConnection: RefuseWorkerServer}, nil
}

// tokenPath is TokenFile, relative to the config file's directory.
func (c *Config) tokenPath() string {
	if c.TokenFile == "" || filepath.IsAbs(c.TokenFile) || c.dir == "" {
		return c.TokenFile
	}
	return filepath.Join(c.dir, c.TokenFile)
}

// workerGroup is the certificate organization of worker nodes (pki's
// GroupNodes; proto/ imports nothing of controlplane).
const workerGroup = "skiff:nodes"

// RefuseWorkerServer refuses a server certificate of a worker: workers
// serve their stream port (7445) to control nodes, never the API, so a
// client of the API never accepts one, even at the worker's own address.
func RefuseWorkerServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) > 0 && slices.Contains(cs.PeerCertificates[0].Subject.Organization, workerGroup) {
		return fmt.Errorf("tls: the server presented the certificate of worker %s, where a control node was expected", cs.PeerCertificates[0].Subject.CommonName)
	}
	return nil
}
