package client

import (
	"fmt"
	"strings"
)

// DefaultContextName names the one cluster of a file without contexts
// (`ctl config get-contexts` shows it so).
const DefaultContextName = "default"

// NamedContext is one cluster of a config file with several:
//
//	current-context: prod
//	contexts:
//	- name: prod
//	  servers: [10.0.0.1:7443]
//	  certificate-authority: prod-ca.crt
//	  client-certificate: admin.crt
//	  client-key: admin.key
//	- name: lab
//	  servers: [127.0.0.1:7443]
//	  certificate-authority-data: …
//	  …
//
// Each context holds the same keys as a file of one cluster.
type NamedContext struct {
	Name string `json:"name"`
	Config
}

// LoadConfigContext reads a config file and returns the context named
// (empty: the file's current context; a file without contexts is its one
// cluster, named DefaultContextName).
func LoadConfigContext(path, name string) (*Config, error) {
	file, err := LoadConfigFile(path)
	if err != nil {
		return nil, err
	}
	if len(file.Contexts) == 0 {
		if name != "" && name != DefaultContextName {
			return nil, fmt.Errorf("%w: %s: no context %q: the file holds one cluster, without contexts", ErrConfig, path, name)
		}
		if err := file.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return file, nil
	}
	if err := file.checkContexts(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if name == "" {
		name = file.CurrentContext
	}
	if name == "" {
		return nil, fmt.Errorf("%w: %s: current-context is not set; choose one of %s with `ctl config use-context NAME` or --context", ErrConfig, path, file.ContextNames())
	}
	for _, nc := range file.Contexts {
		if nc.Name == name {
			c := nc.Config
			c.dir, c.file, c.context = file.dir, file, name
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("%s: context %q: %w", path, name, err)
			}
			return &c, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: no context %q (contexts: %s)", ErrConfig, path, name, file.ContextNames())
}

// ContextNames lists the file's contexts, comma-separated.
func (c *Config) ContextNames() string {
	names := make([]string, len(c.Contexts))
	for i, nc := range c.Contexts {
		names[i] = nc.Name
	}
	return strings.Join(names, ", ")
}

// ContextName is the name of the context this config was loaded as
// (DefaultContextName for a file without contexts).
func (c *Config) ContextName() string {
	if c.context == "" {
		return DefaultContextName
	}
	return c.context
}

// checkContexts: a file with contexts keeps every cluster in them.
func (c *Config) checkContexts() error {
	if len(c.Servers) > 0 || c.CertificateAuthority != "" || c.CertificateAuthorityData != "" || c.ClientCertificate != "" ||
		c.ClientCertificateData != "" || c.ClientKey != "" || c.ClientKeyData != "" || c.ServerName != "" {
		return fmt.Errorf("%w: a file with contexts keeps servers and credentials in its contexts, not at the top", ErrConfig)
	}
	seen := map[string]bool{}
	for i, nc := range c.Contexts {
		switch {
		case nc.Name == "":
			return fmt.Errorf("%w: contexts[%d].name is required", ErrConfig, i)
		case seen[nc.Name]:
			return fmt.Errorf("%w: contexts[%d]: name %q is used twice", ErrConfig, i, nc.Name)
		case len(nc.Contexts) > 0 || nc.CurrentContext != "":
			return fmt.Errorf("%w: contexts[%d] (%s): a context cannot hold contexts", ErrConfig, i, nc.Name)
		}
		seen[nc.Name] = true
	}
	return nil
}

// saveContext writes a context's changes (a renewed certificate, new
// servers) back into its file, leaving the other contexts as they are.
func (c *Config) saveContext(path string) error {
	file := *c.file
	file.Contexts = append([]NamedContext(nil), c.file.Contexts...)
	mine := *c
	mine.file, mine.context, mine.dir = nil, "", ""
	for i := range file.Contexts {
		if file.Contexts[i].Name == c.context {
			file.Contexts[i].Config = mine
			return file.Save(path)
		}
	}
	return fmt.Errorf("%w: %s: context %q is no longer in the file", ErrConfig, path, c.context)
}
