package volume

import (
	"os"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Secret is like ConfigMap, but its files live on a tmpfs: secrets never
// touch the node's disk.
type Secret struct {
	SecretName  string            `json:"secretName"`
	Files       map[string][]byte `json:"files"`
	DefaultMode *int32            `json:"defaultMode,omitempty"`
}

func init() {
	Register(Type{Name: "secret", New: func() Source { return &Secret{} },
		FromAPI: func(field string, v *apiv1.Volume, r Resolver) (Source, error) {
			src := v.GetSecret()
			if src == nil {
				return nil, nil
			}
			files, err := projectFiles(field+".secret", src.GetItems(), src.GetOptional(), r,
				func() (map[string][]byte, error) { return r.Secret(src.GetSecretName()) })
			if err != nil {
				return nil, err
			}
			return &Secret{SecretName: src.GetSecretName(), Files: files, DefaultMode: src.DefaultMode}, nil
		}})
}

// VolumeType implements Source.
func (*Secret) VolumeType() string { return "secret" }

// Validate implements Source.
func (s *Secret) Validate(field string) error { return checkFileNames(field, s.Files) }

// Prepare implements Source.
func (s *Secret) Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := mountTmpfsOnce(dir, "mode=0755,size=4m"); err != nil {
		return err
	}
	return writeFiles(dir, s.Files, modeOr(s.DefaultMode, 0o644))
}

// Mount implements Source: always read-only.
func (*Secret) Mount(dir string) (string, bool) { return dir, true }

// TearDown implements Source: the tmpfs goes, and the secret with it.
func (*Secret) TearDown(dir string) error { return unmountIfMounted(dir) }
