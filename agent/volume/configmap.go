package volume

import (
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ConfigMap carries the resolved keys of ConfigMap Name; each key becomes
// a read-only file.
type ConfigMap struct {
	Name        string            `json:"name"`
	Files       map[string][]byte `json:"files"`
	DefaultMode *int32            `json:"defaultMode,omitempty"`
}

func init() {
	Register(Type{Name: "configMap", New: func() Source { return &ConfigMap{} },
		FromAPI: func(field string, v *apiv1.Volume, r Resolver) (Source, error) {
			src := v.GetConfigMap()
			if src == nil {
				return nil, nil
			}
			files, err := projectFiles(field+".configMap", src.GetItems(), src.GetOptional(), r,
				func() (map[string][]byte, error) { return r.ConfigMap(src.GetName()) })
			if err != nil {
				return nil, err
			}
			return &ConfigMap{Name: src.GetName(), Files: files, DefaultMode: src.DefaultMode}, nil
		}})
}

// VolumeType implements Source.
func (*ConfigMap) VolumeType() string { return "configMap" }

// Validate implements Source.
func (c *ConfigMap) Validate(field string) error { return checkFileNames(field, c.Files) }

// Prepare implements Source.
func (c *ConfigMap) Prepare(dir string) error {
	return writeFiles(dir, c.Files, modeOr(c.DefaultMode, 0o644))
}

// Mount implements Source: always read-only, as in Kubernetes.
func (*ConfigMap) Mount(dir string) (string, bool) { return dir, true }

// TearDown implements Source: the files go with the pod's directory.
func (*ConfigMap) TearDown(string) error { return nil }

func modeOr(m *int32, def int32) int32 {
	if m != nil {
		return *m
	}
	return def
}
