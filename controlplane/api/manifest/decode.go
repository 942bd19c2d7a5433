package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// ErrInvalid is wrapped by every decode error.
var ErrInvalid = errors.New("invalid manifest")

// MaxDocumentBytes bounds one input; larger input is rejected before parsing.
const MaxDocumentBytes = 8 << 20

// Problem is one thing wrong with a manifest, located by line and field path.
type Problem struct {
	Line int    // 1-based line in the source; 0 if unknown
	Path string // field path, e.g. spec.template.spec.containers[0].portals; "" for the document
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists the problems of one source (file name or "-").
type Error struct {
	Source   string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		src := e.Source
		if src == "" {
			src = "<input>"
		}
		if p.Line > 0 {
			lines[i] = fmt.Sprintf("%s:%d: ", src, p.Line)
		} else {
			lines[i] = src + ": "
		}
		if p.Path != "" {
			lines[i] += p.Path + ": "
		}
		lines[i] += p.Msg
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// Document is one decoded object with where it came from.
type Document struct {
	Object kinds.Object
	Kind   *kinds.Kind
	// Source names the input the document came from (a file, or "-").
	Source string
	// Line is the line the document starts on.
	Line int
	// lines maps field paths ("spec.replicas", "spec.ports[0].port") to the
	// line of their value, to place validation errors.
	lines map[string]int
}

// LineOf returns the source line of a field path, or of its nearest
// ancestor present in the source, or the document's line.
func (d *Document) LineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := d.lines[p]; ok {
			return l
		}
	}
	return d.Line
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// Decoder turns manifests into objects of registered kinds.
type Decoder struct {
	reg *kinds.Registry
}

// NewDecoder returns a decoder for the kinds in reg.
func NewDecoder(reg *kinds.Registry) *Decoder { return &Decoder{reg: reg} }

// Decode reads every document of a YAML stream (JSON is YAML too) named
// source. Empty documents are skipped; a `kind: List` is expanded into its
// items. It returns the documents that decoded and, if any did not, an
// *Error naming each problem's line and field path.
func (d *Decoder) Decode(source string, data []byte) ([]*Document, error) {
	docs, failed := d.DecodeEach(source, data)
	if len(failed) == 0 {
		return docs, nil
	}
	all := &Error{Source: source}
	for _, e := range failed {
		all.Problems = append(all.Problems, e.Problems...)
	}
	return docs, all
}

// DecodeEach is Decode that keeps the failures apart: one *Error per
// document that did not decode (a List counts as one), or for the input
// (too large, not UTF-8, a YAML syntax error, after which nothing more is
// read), so a caller can report and count each on its own.
func (d *Decoder) DecodeEach(source string, data []byte) (docs []*Document, failed []*Error) {
	if len(data) > MaxDocumentBytes {
		return nil, []*Error{{Source: source, Problems: []Problem{{Msg: fmt.Sprintf("input is %d bytes, more than the %d allowed", len(data), MaxDocumentBytes)}}}}
	}
	if p, bad := invalidUTF8(data); bad {
		return nil, []*Error{{Source: source, Problems: []Problem{p}}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			failed = append(failed, &Error{Source: source, Problems: []Problem{{Line: yamlErrorLine(err), Msg: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}})
			break // the parser cannot resynchronize after a syntax error
		}
		if len(root.Content) == 0 {
			continue
		}
		got, ps := d.decodeNode(root.Content[0])
		for _, doc := range got {
			doc.Source = source
		}
		docs = append(docs, got...)
		if len(ps) > 0 {
			failed = append(failed, &Error{Source: source, Problems: ps})
		}
	}
	return docs, failed
}

// DecodeOne decodes input that must hold exactly one object.
func (d *Decoder) DecodeOne(source string, data []byte) (*Document, error) {
	docs, err := d.Decode(source, data)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, &Error{Source: source, Problems: []Problem{{Msg: fmt.Sprintf("expected exactly one object, found %d", len(docs))}}}
	}
	return docs[0], nil
}

func yamlErrorLine(err error) int {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if i := strings.Index(msg, "line "); i >= 0 {
		n := 0
		for _, c := range msg[i+5:] {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	return 0
}

func (d *Decoder) decodeNode(n *yaml.Node) ([]*Document, []Problem) {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil // an empty document ("---" followed by comments)
	}
	if n.Kind != yaml.MappingNode {
		return nil, []Problem{{Line: n.Line, Msg: "a manifest must be a mapping with apiVersion, kind and metadata, got " + describe(n)}}
	}
	apiVersion, kind := scalarField(n, "apiVersion"), scalarField(n, "kind")
	if kind == nil {
		return nil, []Problem{{Line: n.Line, Path: "kind", Msg: "required field is missing"}}
	}
	if kind.Value == "List" && strings.HasSuffix(valueOf(apiVersion), "v1") {
		return d.decodeList(n)
	}
	k, err := d.reg.Resolve(valueOf(apiVersion), kind.Value)
	if err != nil {
		line, path := kind.Line, "kind"
		if errors.Is(err, kinds.ErrUnsupportedVersion) {
			path = "apiVersion"
			if apiVersion != nil {
				line = apiVersion.Line
			}
		}
		probs := []Problem{{Line: line, Path: path, Msg: err.Error()}}
		// Check the body against the current schema too, so a retired
		// manifest also learns which fields no longer exist.
		if kk, ok := d.reg.ForKind(kind.Value); ok {
			w := walker{lines: map[string]int{}}
			w.message(n, kk.New().ProtoReflect().Descriptor(), "", true)
			probs = append(probs, w.problems...)
		}
		return nil, probs
	}
	obj := k.DecodeTarget(valueOf(apiVersion))
	w := walker{lines: map[string]int{}}
	tree := w.message(n, obj.ProtoReflect().Descriptor(), "", true)
	if len(w.problems) > 0 {
		return nil, w.problems
	}
	if err := unmarshalTree(tree, obj); err != nil {
		return nil, []Problem{{Line: n.Line, Msg: err.Error()}}
	}
	obj, errs := k.ToStored(valueOf(apiVersion), obj)
	if len(errs) > 0 {
		probs := make([]Problem, len(errs))
		for i, fe := range errs {
			probs[i] = Problem{Line: lineOf(w.lines, fe.Path, n.Line), Path: fe.Path, Msg: strings.TrimPrefix(fe.Error(), fe.Path+": ")}
		}
		return nil, probs
	}
	return []*Document{{Object: obj, Kind: k, Line: n.Line, lines: w.lines}}, nil
}

func (d *Decoder) decodeList(n *yaml.Node) ([]*Document, []Problem) {
	var docs []*Document
	var probs []Problem
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		switch k.Value {
		case "apiVersion", "kind", "metadata":
		case "items":
			if v.Kind != yaml.SequenceNode {
				probs = append(probs, Problem{Line: v.Line, Path: "items", Msg: "must be a list, got " + describe(v)})
				continue
			}
			for _, item := range v.Content {
				ds, ps := d.decodeNode(item)
				docs = append(docs, ds...)
				probs = append(probs, ps...)
			}
		default:
			probs = append(probs, Problem{Line: k.Line, Path: k.Value, Msg: fmt.Sprintf("unknown field %q", k.Value)})
		}
	}
	return docs, probs
}

func unmarshalTree(tree any, obj proto.Message) error {
	js, err := json.Marshal(tree)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, obj); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

func scalarField(n *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			v := resolveAlias(n.Content[i+1])
			if v.Kind == yaml.ScalarNode {
				return v
			}
			return nil
		}
	}
	return nil
}

func valueOf(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for depth := 0; n.Kind == yaml.AliasNode && n.Alias != nil && depth < 16; depth++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!int", "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	}
	return "string " + strconv.Quote(n.Value)
}

// walker converts a YAML node tree into a JSON-ready tree that protojson
// accepts, checking each field against the proto descriptor on the way.
type walker struct {
	problems []Problem
	lines    map[string]int
	nodes    int
	depth    int
}

// maxNodes and maxDepth bound work on hostile input: alias bombs and
// self-referencing aliases (spec: &a {template: *a}). Real kinds nest
// fewer than 20 levels.
const (
	maxNodes = 100_000
	maxDepth = 64
)

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	if len(w.problems) < 100 {
		w.problems = append(w.problems, Problem{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (w *walker) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string, top bool) any {
	n = resolveAlias(n)
	if w.nodes++; w.nodes > maxNodes {
		if w.nodes == maxNodes+1 {
			w.fail(n, path, "document too large or too deeply aliased")
		}
		return nil
	}
	if w.depth >= maxDepth {
		w.fail(n, path, "nested too deeply (recursive alias?)")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "expected a mapping (object), got %s", describe(n))
		return nil
	}
	w.depth++
	defer func() { w.depth-- }()
	out := map[string]any{}
	fields := md.Fields()
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], resolveAlias(n.Content[i+1])
		name := kn.Value
		fp := join(path, name)
		if kn.Kind != yaml.ScalarNode {
			w.fail(kn, path, "field names must be strings, got %s", describe(kn))
			continue
		}
		if name == "<<" {
			w.fail(kn, path, "YAML merge keys (<<) are not supported")
			continue
		}
		fd := fields.ByJSONName(name)
		if fd == nil || fd.JSONName() != name {
			w.fail(kn, fp, "unknown field %q%s", name, suggest(name, fields))
			continue
		}
		if _, dup := out[name]; dup {
			w.fail(kn, fp, "field %q is given twice", name)
			continue
		}
		w.lines[fp] = kn.Line
		if vn.Kind == yaml.ScalarNode && vn.Tag == "!!null" {
			continue // null means unset, as in Kubernetes (creationTimestamp: null)
		}
		if v := w.field(vn, fd, fp); v != nil {
			out[name] = v
		}
	}
	return out
}

func suggest(name string, fields protoreflect.FieldDescriptors) string {
	for i := 0; i < fields.Len(); i++ {
		if strings.EqualFold(fields.Get(i).JSONName(), name) {
			return fmt.Sprintf(" (did you mean %q?)", fields.Get(i).JSONName())
		}
	}
	return ""
}

func (w *walker) field(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) any {
	switch {
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a mapping (object), got %s", describe(n))
			return nil
		}
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], resolveAlias(n.Content[i+1])
			if kn.Kind != yaml.ScalarNode {
				w.fail(kn, path, "map keys must be strings, got %s", describe(kn))
				continue
			}
			kp := path + "[" + kn.Value + "]"
			w.lines[kp] = kn.Line
			if _, dup := out[kn.Value]; dup {
				w.fail(kn, kp, "key %q is given twice", kn.Value)
				continue
			}
			if vn.Kind == yaml.ScalarNode && vn.Tag == "!!null" {
				if fd.MapValue().Kind() == protoreflect.StringKind {
					out[kn.Value] = "" // Kubernetes reads a null label/annotation value as ""
				}
				continue
			}
			if v := w.single(vn, fd.MapValue(), fd, kp); v != nil {
				out[kn.Value] = v
			}
		}
		return out
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "expected a list, got %s", describe(n))
			return nil
		}
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			e = resolveAlias(e)
			ep := path + "[" + strconv.Itoa(i) + "]"
			w.lines[ep] = e.Line
			if e.Kind == yaml.ScalarNode && e.Tag == "!!null" {
				w.fail(e, ep, "list elements may not be null")
				continue
			}
			if v := w.single(e, fd, fd, ep); v != nil {
				out = append(out, v)
			}
		}
		return out
	}
	return w.single(n, fd, fd, path)
}

// single converts one value of type vd; opts is the field carrying the
// int_or_string / quantity options (the map field for map values).
func (w *walker) single(n *yaml.Node, vd, opts protoreflect.FieldDescriptor, path string) any {
	if vd.Kind() == protoreflect.MessageKind {
		return w.message(n, vd.Message(), path, false)
	}
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "expected %s, got %s", kindName(vd, opts), describe(n))
		return nil
	}
	switch vd.Kind() {
	case protoreflect.StringKind:
		switch n.Tag {
		case "!!str", "!!timestamp", "!!binary":
			return n.Value
		case "!!int":
			if isIntOrString(opts) || isQuantity(opts) {
				i, err := strconv.ParseInt(n.Value, 0, 64)
				if err != nil {
					w.fail(n, path, "%s is out of range", n.Value)
					return nil
				}
				return strconv.FormatInt(i, 10)
			}
		case "!!float":
			if isQuantity(opts) {
				return n.Value
			}
			if isIntOrString(opts) {
				w.fail(n, path, "expected an integer or a string, got number %s", n.Value)
				return nil
			}
		}
		w.fail(n, path, "expected %s, got %s", kindName(vd, opts), describe(n))
		return nil
	case protoreflect.BoolKind:
		if n.Tag == "!!bool" {
			return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
		}
		w.fail(n, path, "expected a boolean (true or false), got %s", describe(n))
		return nil
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
		if n.Tag != "!!int" {
			w.fail(n, path, "expected an integer, got %s", describe(n))
			return nil
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		bits32 := vd.Kind() == protoreflect.Int32Kind || vd.Kind() == protoreflect.Sint32Kind || vd.Kind() == protoreflect.Sfixed32Kind
		if err != nil || (bits32 && (i < math.MinInt32 || i > math.MaxInt32)) {
			w.fail(n, path, "%s is out of range for a 32-bit integer", n.Value)
			return nil
		}
		return json.Number(strconv.FormatInt(i, 10))
	case protoreflect.BytesKind:
		if n.Tag != "!!str" {
			w.fail(n, path, "expected base64 data, got %s", describe(n))
			return nil
		}
		if _, err := base64.StdEncoding.DecodeString(n.Value); err != nil {
			w.fail(n, path, "illegal base64 data: %v", err)
			return nil
		}
		return n.Value
	}
	w.fail(n, path, "unsupported field type %s", vd.Kind())
	return nil
}

func isIntOrString(fd protoreflect.FieldDescriptor) bool {
	return proto.GetExtension(fd.Options(), apiv1.E_IntOrString).(bool)
}

func isQuantity(fd protoreflect.FieldDescriptor) bool {
	return proto.GetExtension(fd.Options(), apiv1.E_Quantity).(bool)
}

func kindName(vd, opts protoreflect.FieldDescriptor) string {
	switch {
	case isIntOrString(opts):
		return "an integer or a string"
	case isQuantity(opts):
		return "a quantity (like 500m or 128Mi)"
	}
	switch vd.Kind() {
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BoolKind:
		return "a boolean"
	case protoreflect.BytesKind:
		return "base64 data"
	case protoreflect.MessageKind:
		return "a mapping (object)"
	}
	return "an integer"
}

// Validate applies the kind's defaults to a copy of the document's object and
// validates it, returning an *Error whose problems carry each field's source
// line (nil when valid). The document's object is not modified.
func (d *Document) Validate(source string) error {
	obj := codec.Clone(d.Object)
	d.Kind.Default(obj)
	errs := d.Kind.Validate(obj)
	if len(errs) == 0 {
		return nil
	}
	e := &Error{Source: source}
	for _, fe := range errs {
		msg := strings.TrimPrefix(fe.Error(), fe.Path+": ")
		e.Problems = append(e.Problems, Problem{Line: d.LineOf(fe.Path), Path: fe.Path, Msg: msg})
	}
	return e
}

// FieldErrors returns the validation errors behind an error from
// Document.Validate, for callers that want paths without lines.
func FieldErrors(err error) []Problem {
	var e *Error
	if errors.As(err, &e) {
		return e.Problems
	}
	return nil
}

func lineOf(lines map[string]int, path string, def int) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := lines[p]; ok {
			return l
		}
	}
	return def
}
