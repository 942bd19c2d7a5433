package volume

import (
	"fmt"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// DownwardAPI shows the pod's own fields as files: each item's fieldRef
// (metadata.name, namespace, uid, labels, annotations, one label or
// annotation) or resourceFieldRef (a container's cpu/memory requests and
// limits). The agent resolves the values; when labels or annotations
// change, the files are rewritten in the running pod (Updatable).
type DownwardAPI struct {
	Files       map[string][]byte `json:"files"`
	DefaultMode *int32            `json:"defaultMode,omitempty"`
}

// DownwardResolver resolves downward API items for one pod. The agent's
// volume resolver implements it; a Resolver without it refuses
// downwardAPI volumes.
type DownwardResolver interface {
	// DownwardField is a fieldRef's value as a volume file shows it
	// (labels and annotations as sorted key="value" lines).
	DownwardField(path string) (string, error)
	// DownwardResource is a resourceFieldRef's value.
	DownwardResource(sel *apiv1.ResourceFieldSelector) (string, error)
}

// volumeFieldPaths are the fieldRefs Kubernetes allows in volumes (besides
// one label or annotation).
var volumeFieldPaths = map[string]bool{"metadata.name": true, "metadata.namespace": true, "metadata.uid": true,
	"metadata.labels": true, "metadata.annotations": true}

func init() {
	Register(Type{Name: "downwardAPI", New: func() Source { return &DownwardAPI{} }, FromAPI: downwardFromAPI})
}

func downwardFromAPI(field string, v *apiv1.Volume, r Resolver) (Source, error) {
	src := v.GetDownwardAPI()
	if src == nil {
		return nil, nil
	}
	field += ".downwardAPI"
	dr, ok := r.(DownwardResolver)
	if !ok {
		return nil, fmt.Errorf("%s: this node cannot resolve downward API fields", field)
	}
	files := map[string][]byte{}
	for j, it := range src.GetItems() {
		f := fmt.Sprintf("%s.items[%d]", field, j)
		if p := it.GetPath(); p == "" || strings.Contains(p, "/") || strings.HasPrefix(p, "..") {
			return nil, fmt.Errorf("%s.path %q: want a file name not starting with '..'", f, p)
		}
		var val string
		var err error
		switch {
		case it.GetFieldRef() != nil && it.GetResourceFieldRef() != nil:
			return nil, fmt.Errorf("%s: fieldRef and resourceFieldRef are mutually exclusive", f)
		case it.GetFieldRef() != nil:
			path := it.GetFieldRef().GetFieldPath()
			if !volumeFieldPaths[path] && !strings.HasPrefix(path, "metadata.labels['") && !strings.HasPrefix(path, "metadata.annotations['") {
				return nil, fmt.Errorf("%s.fieldRef.fieldPath %q: volumes show metadata.name, namespace, uid, labels, annotations", f, path)
			}
			if val, err = dr.DownwardField(path); err != nil {
				return nil, fmt.Errorf("%s.fieldRef: %w", f, err)
			}
		case it.GetResourceFieldRef() != nil:
			if it.GetResourceFieldRef().GetContainerName() == "" {
				return nil, fmt.Errorf("%s.resourceFieldRef.containerName: required in a volume", f)
			}
			if val, err = dr.DownwardResource(it.GetResourceFieldRef()); err != nil {
				return nil, fmt.Errorf("%s.resourceFieldRef: %w", f, err)
			}
		default:
			return nil, fmt.Errorf("%s: needs fieldRef or resourceFieldRef", f)
		}
		files[it.GetPath()] = []byte(val)
	}
	return &DownwardAPI{Files: files, DefaultMode: src.DefaultMode}, nil
}

// VolumeType implements Source.
func (*DownwardAPI) VolumeType() string { return "downwardAPI" }

// Validate implements Source.
func (d *DownwardAPI) Validate(field string) error { return checkFileNames(field, d.Files) }

// Prepare implements Source.
func (d *DownwardAPI) Prepare(dir string) error {
	return writeFiles(dir, d.Files, modeOr(d.DefaultMode, 0o644))
}

// Update implements Updatable.
func (d *DownwardAPI) Update(dir string) error { return d.Prepare(dir) }

// Mount implements Source: always read-only, as in Kubernetes.
func (*DownwardAPI) Mount(dir string) (string, bool) { return dir, true }

// TearDown implements Source: the files go with the pod's directory.
func (*DownwardAPI) TearDown(string) error { return nil }
