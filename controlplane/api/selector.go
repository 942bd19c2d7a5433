package api

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// labelRequirement is one term of a label selector.
type labelRequirement struct {
	key    string
	op     string // =, !=, in, notin, exists, !
	values []string
}

// LabelSelector is a parsed label selector string, kubectl syntax:
// "app=web,tier!=db,env in (a,b),env notin (c),team,!legacy".
type LabelSelector struct{ reqs []labelRequirement }

// ParseLabelSelector parses a selector; "" selects everything.
func ParseLabelSelector(s string) (*LabelSelector, error) {
	sel := &LabelSelector{}
	for _, term := range splitTerms(s) {
		term = strings.TrimSpace(term)
		if term == "" {
			return nil, fmt.Errorf("%w: labelSelector %q: empty term", ErrInvalid, s)
		}
		r, err := parseLabelTerm(term)
		if err != nil {
			return nil, fmt.Errorf("%w: labelSelector %q: %v", ErrInvalid, s, err)
		}
		sel.reqs = append(sel.reqs, r)
	}
	return sel, nil
}

// splitTerms splits on commas outside parentheses.
func splitTerms(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func parseLabelTerm(t string) (labelRequirement, error) {
	if strings.HasPrefix(t, "!") {
		k := strings.TrimSpace(t[1:])
		return labelRequirement{key: k, op: "!"}, checkLabelKey(k)
	}
	for _, op := range []string{" notin ", " in "} {
		if i := strings.Index(t, op); i > 0 {
			k := strings.TrimSpace(t[:i])
			rest := strings.TrimSpace(t[i+len(op):])
			if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
				return labelRequirement{}, fmt.Errorf("%q: values must be in parentheses", t)
			}
			var vals []string
			for _, v := range strings.Split(rest[1:len(rest)-1], ",") {
				v = strings.TrimSpace(v)
				if msgs := kinds.IsLabelValue(v); len(msgs) > 0 {
					return labelRequirement{}, fmt.Errorf("value %q: %s", v, strings.Join(msgs, "; "))
				}
				vals = append(vals, v)
			}
			return labelRequirement{key: k, op: strings.TrimSpace(op), values: vals}, checkLabelKey(k)
		}
	}
	for _, op := range []string{"!=", "==", "="} {
		if i := strings.Index(t, op); i > 0 {
			k, v := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i+len(op):])
			if msgs := kinds.IsLabelValue(v); len(msgs) > 0 {
				return labelRequirement{}, fmt.Errorf("value %q: %s", v, strings.Join(msgs, "; "))
			}
			if op == "==" {
				op = "="
			}
			return labelRequirement{key: k, op: op, values: []string{v}}, checkLabelKey(k)
		}
	}
	return labelRequirement{key: t, op: "exists"}, checkLabelKey(t)
}

func checkLabelKey(k string) error {
	if msgs := kinds.IsQualifiedName(k); len(msgs) > 0 {
		return fmt.Errorf("key %q: %s", k, strings.Join(msgs, "; "))
	}
	return nil
}

// Empty reports whether the selector selects everything.
func (s *LabelSelector) Empty() bool { return s == nil || len(s.reqs) == 0 }

// Matches reports whether labels satisfy every requirement.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return true
	}
	for _, r := range s.reqs {
		v, ok := labels[r.key]
		switch r.op {
		case "=":
			if !ok || v != r.values[0] {
				return false
			}
		case "!=":
			if ok && v == r.values[0] {
				return false
			}
		case "in":
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case "notin":
			if ok && slices.Contains(r.values, v) {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!":
			if ok {
				return false
			}
		}
	}
	return true
}

// fieldRequirement compares the scalar at a JSON field path.
type fieldRequirement struct {
	path  []string
	raw   string
	equal bool
	value string
	// fds are path's fields; onWire: stored bytes can answer (storedmatch.go).
	fds    []protoreflect.FieldDescriptor
	onWire bool
}

// FieldSelector is a parsed field selector: "metadata.name=web,spec.nodeName!=n1".
// Any scalar field can be selected by its JSON path; an unset field
// compares as "" (so spec.nodeName= selects unscheduled pods).
type FieldSelector struct{ reqs []fieldRequirement }

// ParseFieldSelector parses s and checks every path against kind k.
func ParseFieldSelector(s string, k *kinds.Kind) (*FieldSelector, error) {
	sel := &FieldSelector{}
	for _, term := range splitTerms(s) {
		term = strings.TrimSpace(term)
		var r fieldRequirement
		switch {
		case strings.Contains(term, "!="):
			i := strings.Index(term, "!=")
			r = fieldRequirement{raw: term[:i], value: term[i+2:]}
		case strings.Contains(term, "=="):
			i := strings.Index(term, "==")
			r = fieldRequirement{raw: term[:i], value: term[i+2:], equal: true}
		case strings.Contains(term, "="):
			i := strings.Index(term, "=")
			r = fieldRequirement{raw: term[:i], value: term[i+1:], equal: true}
		default:
			return nil, fmt.Errorf("%w: fieldSelector %q: term %q needs =, == or !=", ErrInvalid, s, term)
		}
		r.raw = strings.TrimSpace(r.raw)
		r.value = strings.TrimSpace(r.value)
		r.path = strings.Split(r.raw, ".")
		fds, err := checkFieldPath(k.New().ProtoReflect().Descriptor(), r.path)
		if err != nil {
			return nil, fmt.Errorf("%w: fieldSelector %q: %s is not a field of %s: %v", ErrInvalid, s, r.raw, k.Name, err)
		}
		r.fds, r.onWire = fds, fieldOnWire(r.path, fds)
		sel.reqs = append(sel.reqs, r)
	}
	return sel, nil
}

// checkFieldPath resolves path to the fields it names, down to a scalar.
func checkFieldPath(md protoreflect.MessageDescriptor, path []string) ([]protoreflect.FieldDescriptor, error) {
	fds := make([]protoreflect.FieldDescriptor, 0, len(path))
	for i, p := range path {
		fd := md.Fields().ByJSONName(p)
		if fd == nil {
			return nil, fmt.Errorf("no field %q", p)
		}
		if fd.IsList() || fd.IsMap() {
			return nil, fmt.Errorf("%q is a list or map", p)
		}
		fds = append(fds, fd)
		if fd.Kind() == protoreflect.MessageKind {
			if i == len(path)-1 {
				return nil, fmt.Errorf("%q is an object, not a scalar", p)
			}
			md = fd.Message()
			continue
		}
		if i != len(path)-1 {
			return nil, fmt.Errorf("%q is a scalar", p)
		}
	}
	return fds, nil
}

// Empty reports whether the selector selects everything.
func (s *FieldSelector) Empty() bool { return s == nil || len(s.reqs) == 0 }

// Matches reports whether obj satisfies every requirement.
func (s *FieldSelector) Matches(obj kinds.Object) bool {
	if s == nil {
		return true
	}
	for _, r := range s.reqs {
		if (fieldValue(obj.ProtoReflect(), r.path) == r.value) != r.equal {
			return false
		}
	}
	return true
}

func fieldValue(m protoreflect.Message, path []string) string {
	for i, p := range path {
		fd := m.Descriptor().Fields().ByJSONName(p)
		if fd == nil {
			return ""
		}
		if i < len(path)-1 {
			if !m.Has(fd) {
				return ""
			}
			m = m.Get(fd).Message()
			continue
		}
		if fd.HasPresence() && !m.Has(fd) {
			return ""
		}
		v := m.Get(fd)
		switch fd.Kind() {
		case protoreflect.StringKind:
			return v.String()
		case protoreflect.BoolKind:
			return strconv.FormatBool(v.Bool())
		case protoreflect.EnumKind:
			return string(fd.Enum().Values().ByNumber(v.Enum()).Name())
		case protoreflect.BytesKind:
			return string(v.Bytes())
		case protoreflect.FloatKind, protoreflect.DoubleKind:
			return strconv.FormatFloat(v.Float(), 'g', -1, 64)
		case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
			return strconv.FormatUint(v.Uint(), 10)
		default:
			return strconv.FormatInt(v.Int(), 10)
		}
	}
	return ""
}

// selection bundles the selectors of a List or Watch.
type selection struct {
	labels *LabelSelector
	fields *FieldSelector
}

func parseSelection(k *kinds.Kind, labelSel, fieldSel string) (selection, error) {
	ls, err := ParseLabelSelector(labelSel)
	if err != nil {
		return selection{}, err
	}
	fs, err := ParseFieldSelector(fieldSel, k)
	if err != nil {
		return selection{}, err
	}
	return selection{labels: ls, fields: fs}, nil
}

func (s selection) empty() bool { return s.labels.Empty() && s.fields.Empty() }
