package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Source is one volume type's part of a Volume: what the pod record stores
// for it, and its hooks. dir is the volume's own directory under the pod's
// state directory (created by the runtime's caller of Prepare as needed;
// a type that keeps its data elsewhere ignores it).
type Source interface {
	// VolumeType is the registered name (the API's field: "emptyDir").
	VolumeType() string
	// Validate checks the stored source; field names it in errors
	// ("volumes[2] \"data\".hostPath").
	Validate(field string) error
	// Prepare makes the volume ready before any container of the pod
	// starts. It runs again when a pod is re-attached: be idempotent.
	Prepare(dir string) error
	// Mount is what a container mounts: the host path, and whether it is
	// read-only whatever the container's mount says.
	Mount(dir string) (source string, forceReadOnly bool)
	// TearDown undoes Prepare when the pod goes. The runtime unmounts
	// whatever is left under the pod's directory afterwards anyway.
	TearDown(dir string) error
}

// Type is one registered volume type.
type Type struct {
	// Name is the API field and the pod record's key ("emptyDir").
	Name string
	// New returns an empty Source to decode a stored one into.
	New func() Source
	// FromAPI converts the API volume into the Source, or returns nil
	// when v is not of this type. field names v in errors.
	FromAPI func(field string, v *apiv1.Volume, r Resolver) (Source, error)
}

var types = map[string]Type{}

// Register adds a volume type; each type's file calls it from init. A
// name registered twice is a programming error.
func Register(t Type) {
	if _, dup := types[t.Name]; dup {
		panic(fmt.Sprintf("volume: type %q registered twice", t.Name))
	}
	types[t.Name] = t
}

// Names lists the registered types, sorted.
func Names() []string { return slices.Sorted(maps.Keys(types)) }

// Resolver reads the objects of the pod's namespace a volume refers to.
type Resolver interface {
	// ConfigMap is a ConfigMap's data and binaryData as files.
	ConfigMap(name string) (map[string][]byte, error)
	// Secret is a Secret's data.
	Secret(name string) (map[string][]byte, error)
	// IsNotFound reports whether err says the object does not exist.
	IsNotFound(err error) bool
}

// ErrUnsupported: the API volume is of no registered type.
var ErrUnsupported = errors.New("unsupported volume type")

// FromAPI converts an API volume with the first registered type that
// takes it.
func FromAPI(field string, v *apiv1.Volume, r Resolver) (Volume, error) {
	out := Volume{Name: v.GetName()}
	for _, name := range Names() {
		src, err := types[name].FromAPI(field, v, r)
		if err != nil {
			return out, err
		}
		if src != nil {
			out.Source = src
			return out, nil
		}
	}
	return out, fmt.Errorf("%w: %s: only %s volumes are supported", ErrUnsupported, field, strings.Join(Names(), ", "))
}

// Volume is one pod volume as the runtime stores and runs it.
type Volume struct {
	Name   string
	Source Source
}

// Validate checks the name's presence and the source.
func (v Volume) Validate(field string) error {
	if v.Source == nil {
		return fmt.Errorf("%s: no source: one of %s must be set", field, strings.Join(Names(), ", "))
	}
	return v.Source.Validate(field + "." + v.Source.VolumeType())
}

// MarshalJSON writes {"name": …, "<type>": source}.
func (v Volume) MarshalJSON() ([]byte, error) {
	m := map[string]any{"name": v.Name}
	if v.Source != nil {
		m[v.Source.VolumeType()] = v.Source
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON wrote; a key of no registered type,
// or two sources, is an error naming them.
func (v *Volume) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*v = Volume{}
	if raw, ok := m["name"]; ok {
		if err := json.Unmarshal(raw, &v.Name); err != nil {
			return fmt.Errorf("volume name: %w", err)
		}
		delete(m, "name")
	}
	keys := slices.Sorted(maps.Keys(m))
	if len(keys) > 1 {
		return fmt.Errorf("volume %q: several sources %v: exactly one of %s", v.Name, keys, strings.Join(Names(), ", "))
	}
	for _, k := range keys {
		t, ok := types[k]
		if !ok {
			return fmt.Errorf("%w: volume %q: %q (have %s)", ErrUnsupported, v.Name, k, strings.Join(Names(), ", "))
		}
		src := t.New()
		if err := json.Unmarshal(m[k], src); err != nil {
			return fmt.Errorf("volume %q %s: %w", v.Name, k, err)
		}
		v.Source = src
	}
	return nil
}

// projectFiles maps a ConfigMap's or Secret's keys to files: all keys, or
// only items (key → path). An optional source that does not exist gives an
// empty volume.
func projectFiles(field string, items []*apiv1.KeyToPath, optional bool, r Resolver, read func() (map[string][]byte, error)) (map[string][]byte, error) {
	data, err := read()
	if err != nil {
		if optional && r.IsNotFound(err) {
			return map[string][]byte{}, nil
		}
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	if len(items) == 0 {
		return maps.Clone(data), nil
	}
	files := map[string][]byte{}
	for j, it := range items {
		v, ok := data[it.GetKey()]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s.items[%d]: key %q not found", field, j, it.GetKey())
		}
		if strings.Contains(it.GetPath(), "/") {
			return nil, fmt.Errorf("%s.items[%d].path %q: nested paths are not supported", field, j, it.GetPath())
		}
		files[it.GetPath()] = v
	}
	return files, nil
}

// checkFileNames: every key is a plain file name.
func checkFileNames(field string, files map[string][]byte) error {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.Contains(k, "/") || k == "." || strings.HasPrefix(k, "..") { // ".." names are the atomic writer's
			return fmt.Errorf("%s: key %q is not a file name", field, k)
		}
	}
	return nil
}
