package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// MarshalJSON renders obj as Kubernetes-shaped JSON: int-or-string fields
// that hold a number and int64 fields become JSON numbers (protojson writes
// them as strings). Keys are sorted, as kubectl prints them.
func MarshalJSON(obj proto.Message) ([]byte, error) {
	tree, err := toTree(obj)
	if err != nil {
		return nil, err
	}
	return json.Marshal(tree)
}

// MarshalJSONIndent is MarshalJSON indented for `get -o json`.
func MarshalJSONIndent(obj proto.Message) ([]byte, error) {
	tree, err := toTree(obj)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(tree, "", "    ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// MarshalYAML renders obj as Kubernetes-shaped YAML for `get -o yaml`.
func MarshalYAML(obj proto.Message) ([]byte, error) {
	js, err := MarshalJSON(obj)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(js)
}

// MarshalList renders objects as one `kind: List` document (JSON when asJSON,
// else YAML), the shape of `get -o yaml` without a name.
func MarshalList(objs []kinds.Object, resourceVersion string, asJSON bool) ([]byte, error) {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		t, err := toTree(o)
		if err != nil {
			return nil, err
		}
		items = append(items, t)
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items,
		"metadata": map[string]any{"resourceVersion": resourceVersion}}
	if asJSON {
		out, err := json.MarshalIndent(list, "", "    ")
		return append(out, '\n'), err
	}
	js, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(js)
}

// UnmarshalJSON reads Kubernetes-shaped JSON (as produced by MarshalJSON or
// by a JSON merge patch applied to it) into obj, with the same normalization
// and unknown-field checks as Decode but without line numbers.
func UnmarshalJSON(data []byte, obj kinds.Object) error {
	var root any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	w := jsonWalker{}
	tree := w.message(root, obj.ProtoReflect().Descriptor(), "")
	if len(w.problems) > 0 {
		return &Error{Source: "json", Problems: w.problems}
	}
	proto.Reset(obj)
	return unmarshalTree(tree, obj)
}

func toTree(obj proto.Message) (any, error) {
	js, err := protojson.MarshalOptions{}.Marshal(obj)
	if err != nil {
		// An object stored before the API refused strings that are not
		// UTF-8 prints with U+FFFD in their place rather than not at
		// all: one bad annotation must not break `get -o yaml` of a kind.
		if fixed := proto.Clone(obj); replaceInvalidUTF8(fixed.ProtoReflect()) {
			js, err = protojson.MarshalOptions{}.Marshal(fixed)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.ProtoReflect().Descriptor().Name(), err)
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.ProtoReflect().Descriptor().Name(), err)
	}
	kubeShape(tree, obj.ProtoReflect().Descriptor())
	return tree, nil
}

// kubeShape rewrites protojson's output in place where it differs from
// Kubernetes: numeric int-or-string values and int64s become numbers.
func kubeShape(v any, md protoreflect.MessageDescriptor) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for name, val := range m {
		fd := md.Fields().ByJSONName(name)
		if fd == nil {
			continue
		}
		m[name] = shapeField(val, fd)
	}
}

func shapeField(val any, fd protoreflect.FieldDescriptor) any {
	switch {
	case fd.IsMap():
		if mv, ok := val.(map[string]any); ok {
			for k, e := range mv {
				mv[k] = shapeSingle(e, fd.MapValue(), fd)
			}
		}
		return val
	case fd.IsList():
		if lv, ok := val.([]any); ok {
			for i, e := range lv {
				lv[i] = shapeSingle(e, fd, fd)
			}
		}
		return val
	}
	return shapeSingle(val, fd, fd)
}

func shapeSingle(val any, vd, opts protoreflect.FieldDescriptor) any {
	switch vd.Kind() {
	case protoreflect.MessageKind:
		kubeShape(val, vd.Message())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := val.(string); ok {
			return json.Number(s)
		}
	case protoreflect.StringKind:
		if s, ok := val.(string); ok && isIntOrString(opts) {
			if _, err := strconv.ParseInt(s, 10, 32); err == nil && s == strconv.Itoa(atoi(s)) {
				return json.Number(s)
			}
		}
	}
	return val
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
