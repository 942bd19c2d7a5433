package kinds

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// Sentinel errors; callers match them with errors.Is.
var (
	// ErrUnknownKind: no registered kind has this name (in this apiVersion).
	ErrUnknownKind = errors.New("unknown kind")
	// ErrUnsupportedVersion: the kind exists but not in the requested
	// apiVersion (the error names the apiVersion to use instead).
	ErrUnsupportedVersion = errors.New("apiVersion not served")
)

// Object is what every kind's generated message satisfies: type metadata
// (apiVersion, kind) and object metadata.
type Object interface {
	proto.Message
	GetApiVersion() string
	GetKind() string
	GetMetadata() *apiv1.ObjectMeta
}

// Column is one printer column of `ctl get`. Wide columns only show with -o wide.
type Column struct {
	Name string
	Wide bool
}

// Kind describes one registered kind. Fields are read-only after registration.
type Kind struct {
	// Name is the kind as written in manifests ("Deployment").
	Name string
	// Plural is the resource name ("deployments"), used in storage keys and
	// accepted by Lookup; Singular is the lower-case kind ("deployment").
	Plural, Singular string
	// ShortNames are kubectl's abbreviations ("deploy").
	ShortNames []string
	// Group is the API group ("" for core, "apps", "batch" …).
	Group string
	// APIVersions are the apiVersions accepted in manifests; the first is the
	// one objects are written with.
	APIVersions []string
	// Retired maps an apiVersion Kubernetes used to serve for this kind (or
	// that Skiff does not serve) to the reason, e.g. "removed in Kubernetes 1.16".
	Retired map[string]string
	// Namespaced kinds live in a namespace; the others are cluster-scoped.
	Namespaced bool
	// Conversions are further apiVersions accepted in manifests whose
	// schema differs from the stored one (autoscaling/v1 beside
	// autoscaling/v2): decoded into their own message, then converted.
	Conversions map[string]Conversion

	newObject   func() Object
	defaults    func(Object)
	validate    func(Object) FieldErrors
	validateUpd func(old, cur Object) FieldErrors
	nameCheck   func(string) []string
	columns     []Column
	row         func(Object, time.Time) []string
	hooks       hooks
	statusField protoreflect.FieldDescriptor
}

// APIVersion is the apiVersion objects of this kind are written with.
func (k *Kind) APIVersion() string { return k.APIVersions[0] }

// Resource is the qualified resource name ("deployments.apps", "pods").
func (k *Kind) Resource() string {
	if k.Group == "" {
		return k.Plural
	}
	return k.Plural + "." + k.Group
}

// New returns an empty object of this kind with apiVersion and kind set.
func (k *Kind) New() Object {
	obj := k.newObject()
	SetTypeMeta(obj, k.APIVersion(), k.Name)
	return obj
}

// MessageName is the full proto name of the kind's message ("skiff.api.v1.Pod").
func (k *Kind) MessageName() protoreflect.FullName {
	return k.newObject().ProtoReflect().Descriptor().FullName()
}

// HasStatus reports whether the kind has a status subresource.
func (k *Kind) HasStatus() bool { return k.statusField != nil }

// Default fills unset fields the way Kubernetes defaults them, and sets
// apiVersion and kind. It is idempotent.
func (k *Kind) Default(obj Object) {
	SetTypeMeta(obj, k.APIVersion(), k.Name)
	if k.defaults != nil {
		k.defaults(obj)
	}
}

// Validate checks an object for create: type and object metadata, then the
// kind's own rules. Every error names the full field path and the value.
func (k *Kind) Validate(obj Object) FieldErrors {
	var errs FieldErrors
	if got := obj.GetKind(); got != "" && got != k.Name {
		errs = append(errs, Invalid("kind", got, "must be "+k.Name))
	}
	if v := obj.GetApiVersion(); v != "" && !slices.Contains(k.APIVersions, v) {
		errs = append(errs, NotSupported("apiVersion", v, k.APIVersions))
	}
	errs = append(errs, validateObjectMeta(obj.GetMetadata(), k.Namespaced, k.nameCheck, "metadata")...)
	if k.validate != nil {
		errs = append(errs, k.validate(obj)...)
	}
	sortErrors(errs)
	return errs
}

// ValidateUpdate checks cur as a replacement of old: everything Validate
// checks plus immutable fields (name, namespace, uid, selectors …).
func (k *Kind) ValidateUpdate(old, cur Object) FieldErrors {
	errs := k.Validate(cur)
	om, cm := old.GetMetadata(), cur.GetMetadata()
	if om.GetName() != cm.GetName() {
		errs = append(errs, Invalid("metadata.name", cm.GetName(), "field is immutable"))
	}
	if om.GetNamespace() != cm.GetNamespace() {
		errs = append(errs, Invalid("metadata.namespace", cm.GetNamespace(), "field is immutable"))
	}
	if om.GetUid() != "" && cm.GetUid() != "" && om.GetUid() != cm.GetUid() {
		errs = append(errs, Invalid("metadata.uid", cm.GetUid(), "field is immutable"))
	}
	if k.validateUpd != nil {
		errs = append(errs, k.validateUpd(old, cur)...)
	}
	sortErrors(errs)
	return errs
}

// Columns are the printer columns of `ctl get` for this kind.
func (k *Kind) Columns() []Column { return k.columns }

// Row renders obj as one table row, one cell per column (wide ones included);
// now is used for AGE-like cells.
func (k *Kind) Row(obj Object, now time.Time) []string { return k.row(obj, now) }

// Key is the storage key of one object: /registry/<plural>/<namespace>/<name>,
// or /registry/<plural>/<name> for cluster-scoped kinds.
func (k *Kind) Key(namespace, name string) string {
	if k.Namespaced {
		return "/registry/" + k.Plural + "/" + namespace + "/" + name
	}
	return "/registry/" + k.Plural + "/" + name
}

// Prefix is the storage prefix of all objects of the kind in namespace, or in
// all namespaces when namespace is "" (or the kind is cluster-scoped). It
// ends in "/" so "pods" never matches "podtemplates".
func (k *Kind) Prefix(namespace string) string {
	if k.Namespaced && namespace != "" {
		return "/registry/" + k.Plural + "/" + namespace + "/"
	}
	return "/registry/" + k.Plural + "/"
}

// Registry holds kinds by every name they answer to. It is immutable after
// construction and safe for concurrent use.
type Registry struct {
	kinds   []*Kind
	byName  map[string]*Kind // lower-case kind, plural, singular, short, resource
	byKind  map[string]*Kind // exact kind name
	byProto map[protoreflect.FullName]*Kind
}

// builtin collects the kinds defined in this package; each kind file adds its
// kinds once, in an init function, and nothing mutates the list afterwards.
var builtin []*Kind

// NewRegistry returns a registry of all built-in kinds and the extra ones
// (made with Define). It panics when a name is taken twice: kinds are
// registered at start, and a clash is a programming error.
func NewRegistry(extra ...*Kind) *Registry {
	r, err := newRegistry(append(slices.Clone(builtin), extra...))
	if err != nil {
		panic(err)
	}
	return r
}

func newRegistry(ks []*Kind) (*Registry, error) {
	r := &Registry{byName: map[string]*Kind{}, byKind: map[string]*Kind{}, byProto: map[protoreflect.FullName]*Kind{}}
	for _, k := range ks {
		if _, dup := r.byKind[k.Name]; dup {
			return nil, fmt.Errorf("kind %s registered twice", k.Name)
		}
		r.byKind[k.Name] = k
		r.byProto[k.MessageName()] = k
		names := append([]string{k.Name, k.Plural, k.Singular, k.Resource()}, k.ShortNames...)
		for _, n := range names {
			n = strings.ToLower(n)
			if other, dup := r.byName[n]; dup && other != k {
				return nil, fmt.Errorf("name %q of kind %s already used by %s", n, k.Name, other.Name)
			}
			r.byName[n] = k
		}
		r.kinds = append(r.kinds, k)
	}
	sort.Slice(r.kinds, func(i, j int) bool { return r.kinds[i].Name < r.kinds[j].Name })
	return r, nil
}

// Kinds lists all kinds sorted by name.
func (r *Registry) Kinds() []*Kind { return slices.Clone(r.kinds) }

// Lookup finds a kind by any name a user may type: kind ("Deployment",
// case-insensitive), plural ("deployments"), singular, short name
// ("deploy") or qualified resource ("deployments.apps").
func (r *Registry) Lookup(name string) (*Kind, error) {
	if k, ok := r.byName[strings.ToLower(name)]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: the server doesn't have a resource type %q", ErrUnknownKind, name)
}

// ForKind finds a kind by its exact kind name ("Pod").
func (r *Registry) ForKind(kind string) (*Kind, bool) {
	k, ok := r.byKind[kind]
	return k, ok
}

// ForObject finds the kind of a generated message.
func (r *Registry) ForObject(m proto.Message) (*Kind, error) {
	name := m.ProtoReflect().Descriptor().FullName()
	if k, ok := r.byProto[name]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: message %s is not a registered kind", ErrUnknownKind, name)
}

// Resolve finds the kind a manifest means by its apiVersion and kind. An
// apiVersion Kubernetes no longer serves gets an ErrUnsupportedVersion that
// says which apiVersion to use.
func (r *Registry) Resolve(apiVersion, kind string) (*Kind, error) {
	k, ok := r.byKind[kind]
	if !ok {
		if alt, found := r.byName[strings.ToLower(kind)]; found {
			return nil, fmt.Errorf("%w: %q (did you mean %q?)", ErrUnknownKind, kind, alt.Name)
		}
		return nil, fmt.Errorf("%w: %q in apiVersion %q", ErrUnknownKind, kind, apiVersion)
	}
	if slices.Contains(k.APIVersions, apiVersion) {
		return k, nil
	}
	if _, ok := k.Conversions[apiVersion]; ok {
		return k, nil
	}
	if apiVersion == "" {
		return nil, fmt.Errorf("%w: apiVersion is required for kind %s; use %q", ErrUnsupportedVersion, kind, k.APIVersion())
	}
	if why, retired := k.Retired[apiVersion]; retired {
		return nil, fmt.Errorf("%w: %s in apiVersion %q is no longer served (%s); use apiVersion %q",
			ErrUnsupportedVersion, kind, apiVersion, why, k.APIVersion())
	}
	return nil, fmt.Errorf("%w: kind %s is not served in apiVersion %q; use apiVersion %q",
		ErrUnsupportedVersion, kind, apiVersion, k.APIVersion())
}

// Pack wraps an object in the kind-agnostic envelope used by the API.
func (r *Registry) Pack(obj Object) (*apiv1.Object, error) {
	k, err := r.ForObject(obj)
	if err != nil {
		return nil, err
	}
	a, err := codec.Pack(obj)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", k.Name, err)
	}
	return &apiv1.Object{Kind: k.Name, Object: a}, nil
}

// Unpack opens an envelope, checking that its kind field matches the payload.
func (r *Registry) Unpack(env *apiv1.Object) (Object, *Kind, error) {
	if env.GetObject() == nil {
		return nil, nil, fmt.Errorf("%w: empty object envelope", ErrUnknownKind)
	}
	m, err := codec.Unpack(env.GetObject())
	if err != nil {
		return nil, nil, fmt.Errorf("unpack %s: %w", env.GetObject().GetTypeUrl(), err)
	}
	k, err := r.ForObject(m)
	if err != nil {
		return nil, nil, err
	}
	if env.GetKind() != "" && env.GetKind() != k.Name {
		return nil, nil, fmt.Errorf("%w: envelope says kind %q but carries %s", ErrUnknownKind, env.GetKind(), k.Name)
	}
	return m.(Object), k, nil
}

// Meta returns obj's metadata, creating an empty one if it is unset.
func Meta(obj Object) *apiv1.ObjectMeta {
	if md := obj.GetMetadata(); md != nil {
		return md
	}
	m := obj.ProtoReflect()
	return m.Mutable(m.Descriptor().Fields().ByName("metadata")).Message().Interface().(*apiv1.ObjectMeta)
}

// SetTypeMeta sets the apiVersion and kind fields of obj.
func SetTypeMeta(obj Object, apiVersion, kind string) {
	m := obj.ProtoReflect()
	fs := m.Descriptor().Fields()
	m.Set(fs.ByName("apiVersion"), protoreflect.ValueOfString(apiVersion))
	m.Set(fs.ByName("kind"), protoreflect.ValueOfString(kind))
}

// SpecEqual reports whether a and b (same kind) have equal desired state:
// every field except type metadata, object metadata and status. The API
// server bumps metadata.generation when it is false.
func SpecEqual(a, b Object) bool {
	return proto.Equal(stripped(a), stripped(b))
}

func stripped(obj Object) proto.Message {
	c := proto.Clone(obj)
	m := c.ProtoReflect()
	for _, f := range []protoreflect.Name{"apiVersion", "kind", "metadata", "status"} {
		if fd := m.Descriptor().Fields().ByName(f); fd != nil {
			m.Clear(fd)
		}
	}
	return c
}

// Status returns obj's status message, or nil for kinds without status.
func Status(obj Object) proto.Message {
	m := obj.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("status")
	if fd == nil {
		return nil
	}
	return m.Mutable(fd).Message().Interface()
}

// CopyStatus replaces dst's status with src's (for UpdateStatus, and for
// Update which must keep the stored status). No-op for kinds without status.
func CopyStatus(dst, src Object) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	fd := d.Descriptor().Fields().ByName("status")
	if fd == nil {
		return
	}
	if !s.Has(fd) {
		d.Clear(fd)
		return
	}
	d.Set(fd, protoreflect.ValueOfMessage(proto.Clone(s.Get(fd).Message().Interface()).ProtoReflect()))
}

// define registers a built-in kind with typed functions and, optionally,
// its Hooks; each kind file calls it once per kind.
func define[T Object](k Kind, defaults func(T), validate func(T) FieldErrors, row func(T, time.Time) []string, h ...Hooks[T]) *Kind {
	spec := Spec[T]{Defaults: defaults, Validate: validate, Row: row}
	if len(h) > 0 {
		spec.Hooks = h[0]
	}
	kp := Define(k, spec)
	builtin = append(builtin, kp)
	return kp
}

// onUpdate sets a kind's update-only validation (immutable fields).
func onUpdate[T Object](k *Kind, f func(old, cur T) FieldErrors) {
	k.validateUpd = func(o, c Object) FieldErrors { return f(o.(T), c.(T)) }
}

// builtinObjects make the objects every cluster has from the start (the
// system PriorityClasses), registered by their kinds' files.
var builtinObjects []func() []Object

func registerBuiltinObjects(f func() []Object) { builtinObjects = append(builtinObjects, f) }

// BuiltinObjects returns fresh copies of the objects the API server creates
// at start (beside the default namespaces), cluster-scoped kinds only.
func BuiltinObjects() []Object {
	var out []Object
	for _, f := range builtinObjects {
		out = append(out, f()...)
	}
	return out
}

// Conversion reads one older apiVersion of a kind: New makes its message,
// ToStored converts a decoded one to the stored object (with the stored
// apiVersion), or names the fields it cannot convert.
type Conversion struct {
	New      func() Object
	ToStored func(Object) (Object, FieldErrors)
}

// DecodeTarget is the empty message a manifest of apiVersion decodes into:
// the conversion's when apiVersion is converted, else the kind's own.
func (k *Kind) DecodeTarget(apiVersion string) Object {
	if c, ok := k.Conversions[apiVersion]; ok {
		return c.New()
	}
	return k.New()
}

// ToStored converts an object decoded with DecodeTarget(apiVersion) to the
// stored schema (unchanged when apiVersion is not converted).
func (k *Kind) ToStored(apiVersion string, obj Object) (Object, FieldErrors) {
	c, ok := k.Conversions[apiVersion]
	if !ok {
		return obj, nil
	}
	out, errs := c.ToStored(obj)
	if out != nil {
		SetTypeMeta(out, k.APIVersion(), k.Name)
	}
	return out, errs
}
