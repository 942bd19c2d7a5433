package volume

import (
	"fmt"
	"os"
	"path/filepath"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// HostPath mounts a path of the node. Type "" checks nothing; Directory
// and File must exist as such; DirectoryOrCreate creates the directory.
type HostPath struct {
	Path string `json:"path"`
	Type string `json:"type,omitempty"`
}

func init() {
	Register(Type{Name: "hostPath", New: func() Source { return &HostPath{} },
		FromAPI: func(_ string, v *apiv1.Volume, _ Resolver) (Source, error) {
			hp := v.GetHostPath()
			if hp == nil {
				return nil, nil
			}
			return &HostPath{Path: hp.GetPath(), Type: hp.GetType()}, nil
		}})
}

// VolumeType implements Source.
func (*HostPath) VolumeType() string { return "hostPath" }

// Validate implements Source.
func (h *HostPath) Validate(field string) error {
	if !filepath.IsAbs(h.Path) {
		return fmt.Errorf("%s.path %q: must be absolute", field, h.Path)
	}
	switch h.Type {
	case "", "Directory", "DirectoryOrCreate", "File":
		return nil
	}
	return fmt.Errorf("%s.type %q: want \"\", Directory, DirectoryOrCreate or File", field, h.Type)
}

// Prepare implements Source.
func (h *HostPath) Prepare(string) error {
	switch h.Type {
	case "DirectoryOrCreate":
		return os.MkdirAll(h.Path, 0o755)
	case "Directory", "File":
		st, err := os.Stat(h.Path)
		if err != nil {
			return err
		}
		if st.IsDir() != (h.Type == "Directory") {
			return fmt.Errorf("%s is not a %s", h.Path, h.Type)
		}
	}
	return nil
}

// Mount implements Source: the node's path itself.
func (h *HostPath) Mount(string) (string, bool) { return h.Path, false }

// TearDown implements Source: the node's path stays.
func (*HostPath) TearDown(string) error { return nil }
