package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// In-cluster configuration, as client-go's rest.InClusterConfig: a program
// in a pod finds the API at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
// (the kubernetes Service), verifies it against the cluster CA the pod was
// given and authenticates with the pod's service account token; all three
// files are in the volume the ServiceAccount admission mounts.

// ServiceAccountDir is where a pod's token, ca.crt and namespace are.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ErrNotInCluster: the environment or files of a pod are missing.
var ErrNotInCluster = errors.New("not running in a pod with a service account token")

// InClusterConfig builds the config of a program in a pod from the
// environment and ServiceAccountDir.
func InClusterConfig() (*Config, error) { return inClusterConfig(ServiceAccountDir, os.Getenv) }

func inClusterConfig(dir string, getenv func(string) string) (*Config, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("%w: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set", ErrNotInCluster)
	}
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	for _, f := range []string{token, ca} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotInCluster, err)
		}
	}
	cfg := &Config{Servers: []string{net.JoinHostPort(host, port)}, CertificateAuthority: ca, TokenFile: token}
	if ns, err := os.ReadFile(filepath.Join(dir, "namespace")); err == nil {
		cfg.Namespace = strings.TrimSpace(string(ns))
	}
	return cfg, nil
}

// tokenFileCreds sends the token file's content as a bearer token.
type tokenFileCreds string

func (f tokenFileCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("service account token: %s is empty", string(f))
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (tokenFileCreds) RequireTransportSecurity() bool { return true }
