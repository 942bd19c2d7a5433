package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// dockerConfig is the payload of a kubernetes.io/dockerconfigjson Secret
// (the ".dockerconfigjson" key).
type dockerConfig struct {
	Auths map[string]struct {
		Auth     string `json:"auth"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"auths"`
}

// dockerConfigKeychain answers credentials per registry host.
type dockerConfigKeychain map[string]authn.AuthConfig

// KeychainFromDockerConfigJSON parses a dockerconfigjson document into a
// keychain. Registries it does not name get anonymous access.
func KeychainFromDockerConfigJSON(b []byte) (authn.Keychain, error) {
	var dc dockerConfig
	if err := json.Unmarshal(b, &dc); err != nil {
		return nil, fmt.Errorf("image: dockerconfigjson: %w", err)
	}
	kc := dockerConfigKeychain{}
	for host, a := range dc.Auths {
		user, pass := a.Username, a.Password
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("image: dockerconfigjson auths[%q].auth: not base64: %w", host, err)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("image: dockerconfigjson auths[%q].auth: want user:password", host)
			}
			user, pass = u, p
		}
		kc[normalizeRegistryHost(host)] = authn.AuthConfig{Username: user, Password: pass}
	}
	return kc, nil
}

// normalizeRegistryHost turns "https://index.docker.io/v1/" and friends
// into the bare host[:port] go-containerregistry uses.
func normalizeRegistryHost(h string) string {
	if strings.Contains(h, "://") {
		if u, err := url.Parse(h); err == nil {
			h = u.Host
		}
	}
	h, _, _ = strings.Cut(h, "/")
	if h == "docker.io" || h == "registry-1.docker.io" {
		h = "index.docker.io"
	}
	return h
}

func (k dockerConfigKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if c, ok := k[normalizeRegistryHost(r.RegistryStr())]; ok {
		return authn.FromConfig(c), nil
	}
	return authn.Anonymous, nil
}
