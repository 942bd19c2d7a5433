package explain

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

//go:embed api-v1.binpb
var sourceSet []byte

// ErrNoField: a path names a field the kind does not have.
var ErrNoField = errors.New("field does not exist")

var (
	docsOnce sync.Once
	docs     map[protoreflect.FullName]string
	docsErr  error
)

// Comments maps the full name of every message and field of the API
// ("skiff.api.v1.PodSpec", "skiff.api.v1.PodSpec.containers") to its
// comment in the .proto source.
func Comments() (map[protoreflect.FullName]string, error) {
	docsOnce.Do(func() {
		var set descriptorpb.FileDescriptorSet
		if docsErr = proto.Unmarshal(sourceSet, &set); docsErr != nil {
			return
		}
		docs = map[protoreflect.FullName]string{}
		for _, f := range set.GetFile() {
			byPath := map[string]string{}
			for _, loc := range f.GetSourceCodeInfo().GetLocation() {
				c := strings.TrimSpace(loc.GetLeadingComments())
				if c == "" {
					c = strings.TrimSpace(loc.GetTrailingComments())
				}
				if c != "" {
					byPath[fmt.Sprint(loc.GetPath())] = c
				}
			}
			var walk func(prefix string, path []int32, msgs []*descriptorpb.DescriptorProto)
			walk = func(prefix string, path []int32, msgs []*descriptorpb.DescriptorProto) {
				for i, m := range msgs {
					mp := append(append([]int32(nil), path...), int32(i))
					name := prefix + "." + m.GetName()
					docs[protoreflect.FullName(name)] = byPath[fmt.Sprint(mp)]
					for j, fd := range m.GetField() {
						docs[protoreflect.FullName(name+"."+fd.GetName())] = byPath[fmt.Sprint(append(append([]int32(nil), mp...), 2, int32(j)))]
					}
					walk(name, append(append([]int32(nil), mp...), 3), m.GetNestedType())
				}
			}
			walk(f.GetPackage(), []int32{4}, f.GetMessageType())
		}
	})
	return docs, docsErr
}

// Kind is what Explain needs of a registered kind.
type Kind struct {
	Name, Group, Version string
	Message              protoreflect.MessageDescriptor
}

// Explain writes the documentation of kind, or of the field path within
// it ("spec", "template", "spec"…), as kubectl explain does; recursive
// lists every nested field's name and type instead of one level.
func Explain(w io.Writer, k Kind, path []string, recursive bool) error {
	comments, err := Comments()
	if err != nil {
		return fmt.Errorf("explain: embedded descriptors: %w", err)
	}
	md := k.Message
	var field protoreflect.FieldDescriptor
	for i, name := range path {
		if md == nil {
			return fmt.Errorf("%w: %s.%s: %s is not an object", ErrNoField, strings.ToLower(k.Name), strings.Join(path[:i+1], "."), path[i-1])
		}
		fd := findField(md, name)
		if fd == nil {
			return fmt.Errorf("%w: %q in %s (fields: %s)", ErrNoField, strings.Join(path[:i+1], "."), k.Name, fieldNames(md))
		}
		field, md = fd, elemMessage(fd)
	}
	if k.Group != "" {
		fmt.Fprintf(w, "GROUP:      %s\n", k.Group)
	}
	fmt.Fprintf(w, "KIND:       %s\nVERSION:    %s\n\n", k.Name, k.Version)
	desc := comments[k.Message.FullName()]
	if field != nil {
		fmt.Fprintf(w, "FIELD: %s <%s>\n\n", field.Name(), typeName(field))
		desc = comments[field.FullName()]
		if d := docOfMessage(comments, md); desc == "" {
			desc = d
		}
	}
	fmt.Fprintln(w, "DESCRIPTION:")
	if desc == "" {
		desc = "<empty>"
	}
	writeIndented(w, desc, "    ")
	if md == nil || isWellKnownLeaf(md) {
		return nil
	}
	fmt.Fprintln(w, "\nFIELDS:")
	if recursive {
		writeTree(w, md, "  ", map[protoreflect.FullName]bool{})
		return nil
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		fmt.Fprintf(w, "  %s\t<%s>\n", fd.Name(), typeName(fd))
		c := comments[fd.FullName()]
		if c == "" {
			c = docOfMessage(comments, elemMessage(fd))
		}
		if c != "" {
			writeIndented(w, c, "    ")
		}
		fmt.Fprintln(w)
	}
	return nil
}

func docOfMessage(comments map[protoreflect.FullName]string, md protoreflect.MessageDescriptor) string {
	if md == nil {
		return ""
	}
	return comments[md.FullName()]
}

func writeTree(w io.Writer, md protoreflect.MessageDescriptor, indent string, seen map[protoreflect.FullName]bool) {
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		fmt.Fprintf(w, "%s%s\t<%s>\n", indent, fd.Name(), typeName(fd))
		if sub := elemMessage(fd); sub != nil && !seen[sub.FullName()] && !isWellKnownLeaf(sub) {
			writeTree(w, sub, indent+"  ", seen)
		}
	}
}

func writeIndented(w io.Writer, text, indent string) {
	for _, line := range strings.Split(text, "\n") {
		fmt.Fprintln(w, strings.TrimRight(indent+strings.TrimSpace(line), " "))
	}
}

// findField finds a field by its (Kubernetes JSON) name.
func findField(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if string(fd.Name()) == name || fd.JSONName() == name {
			return fd
		}
	}
	return nil
}

func fieldNames(md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

// elemMessage is the message a field holds (its element's for lists, its
// value's for maps), or nil for scalars.
func elemMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return elemMessage(fd.MapValue())
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return fd.Message()
	}
	return nil
}

func isWellKnownLeaf(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// typeName is kubectl's type of a field: string, integer, boolean,
// number, Object names, []T, map[string]T.
func typeName(fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() {
		return "map[string]" + scalarOrMessage(fd.MapValue())
	}
	t := scalarOrMessage(fd)
	if fd.IsList() {
		return "[]" + t
	}
	return t
}

func scalarOrMessage(fd protoreflect.FieldDescriptor) string {
	if proto.HasExtension(fd.Options(), apiv1.E_IntOrString) && proto.GetExtension(fd.Options(), apiv1.E_IntOrString).(bool) {
		return "IntOrString"
	}
	if proto.HasExtension(fd.Options(), apiv1.E_Quantity) && proto.GetExtension(fd.Options(), apiv1.E_Quantity).(bool) {
		return "Quantity"
	}
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.EnumKind:
		return "string"
	case protoreflect.BoolKind:
		return "boolean"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "number"
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().Name())
	}
	return "integer"
}
