package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ClaimResolver is the part of a Resolver that reads persistent volume
// claims: the directory on this node of the volume claim name is bound to,
// and whether this node makes it (a volume the built-in local provisioner
// made for this node) or it must exist. It fails while the claim is not
// bound (the pod waits and is retried).
type ClaimResolver interface {
	ClaimPath(name string) (path string, create bool, err error)
}

// ErrClaimNotSupported: the agent's resolver reads no claims.
var ErrClaimNotSupported = errors.New("persistent volume claims are not supported here")

// Claim mounts the directory of the volume a PersistentVolumeClaim is
// bound to (a local or hostPath volume on this node). The data stays when
// the pod goes: the next pod using the claim finds it.
type Claim struct {
	ClaimName string `json:"claimName"`
	Path      string `json:"path"`
	// Create: the directory is made if missing (a provisioned volume).
	Create   bool `json:"create,omitempty"`
	ReadOnly bool `json:"readOnly,omitempty"`
}

func init() {
	Register(Type{Name: "persistentVolumeClaim", New: func() Source { return &Claim{} },
		FromAPI: func(field string, v *apiv1.Volume, r Resolver) (Source, error) {
			src := v.GetPersistentVolumeClaim()
			if src == nil {
				return nil, nil
			}
			cr, ok := r.(ClaimResolver)
			if !ok {
				return nil, fmt.Errorf("%s.persistentVolumeClaim: %w", field, ErrClaimNotSupported)
			}
			path, create, err := cr.ClaimPath(src.GetClaimName())
			if err != nil {
				return nil, fmt.Errorf("%s.persistentVolumeClaim %q: %w", field, src.GetClaimName(), err)
			}
			return &Claim{ClaimName: src.GetClaimName(), Path: path, Create: create, ReadOnly: src.GetReadOnly()}, nil
		}})
}

// VolumeType implements Source.
func (*Claim) VolumeType() string { return "persistentVolumeClaim" }

// Validate implements Source.
func (c *Claim) Validate(field string) error {
	if c.ClaimName == "" {
		return fmt.Errorf("%s.claimName: required", field)
	}
	if !filepath.IsAbs(c.Path) {
		return fmt.Errorf("%s.path %q: must be absolute", field, c.Path)
	}
	return nil
}

// Prepare implements Source: a provisioned volume's directory is made; a
// static volume's must exist and be a directory.
func (c *Claim) Prepare(string) error {
	if c.Create {
		return os.MkdirAll(c.Path, 0o777)
	}
	st, err := os.Stat(c.Path)
	if err != nil {
		return fmt.Errorf("volume of claim %q: %w", c.ClaimName, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("volume of claim %q: %s is not a directory", c.ClaimName, c.Path)
	}
	return nil
}

// Mount implements Source: the volume's directory itself.
func (c *Claim) Mount(string) (string, bool) { return c.Path, c.ReadOnly }

// TearDown implements Source: the data stays for the claim's next pod.
func (*Claim) TearDown(string) error { return nil }
