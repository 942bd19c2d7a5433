package compat

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Break is one incompatible change: the element of the published API it
// concerns (a full name, with a field's number) and what happened to it.
type Break struct {
	Element string
	Problem string
}

func (b Break) String() string { return b.Element + ": " + b.Problem }

// Resolver finds descriptors by full name (protoregistry.GlobalFiles, or
// the Files of a descriptor set).
type Resolver interface {
	FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
}

// LoadSet reads a serialized FileDescriptorSet (protoc
// --descriptor_set_out --include_imports) into resolvable files.
func LoadSet(path string) (*protoregistry.Files, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s: not a FileDescriptorSet: %w", path, err)
	}
	return FilesOf(&set, path)
}

// FilesOf resolves a descriptor set; name says where it came from in errors.
func FilesOf(set *descriptorpb.FileDescriptorSet, name string) (*protoregistry.Files, error) {
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return files, nil
}

// Check compares every message, enum and service of the given packages in
// published against current and returns the changes that break wire (or
// protojson) compatibility, in a stable order.
func Check(published *protoregistry.Files, current Resolver, packages ...protoreflect.FullName) []Break {
	c := checker{cur: current}
	for _, pkg := range packages {
		published.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			c.messages(fd.Messages())
			c.enums(fd.Enums())
			for i := 0; i < fd.Services().Len(); i++ {
				c.service(fd.Services().Get(i))
			}
			return true
		})
	}
	return c.breaks
}

type checker struct {
	cur    Resolver
	breaks []Break
}

func (c *checker) add(element any, format string, args ...any) {
	c.breaks = append(c.breaks, Break{Element: fmt.Sprint(element), Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) messages(ms protoreflect.MessageDescriptors) {
	for i := 0; i < ms.Len(); i++ {
		old := ms.Get(i)
		if old.IsMapEntry() {
			continue // checked as its map field
		}
		d, err := c.cur.FindDescriptorByName(old.FullName())
		cur, ok := d.(protoreflect.MessageDescriptor)
		if err != nil || !ok {
			c.add(old.FullName(), "message removed")
			continue
		}
		c.fields(old, cur)
		c.messages(old.Messages())
		c.enums(old.Enums())
	}
}

func (c *checker) fields(old, cur protoreflect.MessageDescriptor) {
	for i := 0; i < old.Fields().Len(); i++ {
		of := old.Fields().Get(i)
		el := fmt.Sprintf("%s (field %d)", of.FullName(), of.Number())
		byName := cur.Fields().ByName(of.Name())
		cf := cur.Fields().ByNumber(of.Number())
		switch {
		case byName != nil && byName.Number() != of.Number():
			c.add(el, "field renumbered %d → %d", of.Number(), byName.Number())
			continue
		case cf == nil && cur.ReservedRanges().Has(of.Number()):
			continue // removed with its number reserved: old data is skipped, never misread
		case cf == nil:
			c.add(el, "field removed (reserve its number and name instead)")
			continue
		case cf.Name() != of.Name():
			c.add(el, "field renamed to %s (breaks JSON, which uses field names)", cf.Name())
		}
		if o, n := fieldType(of), fieldType(cf); o != n {
			c.add(el, "field type changed from %s to %s", o, n)
		}
	}
}

// fieldType spells a field's wire-relevant type: cardinality, kind and the
// message or enum it names.
func fieldType(f protoreflect.FieldDescriptor) string {
	if f.IsMap() {
		return "map<" + fieldType(f.MapKey()) + ", " + fieldType(f.MapValue()) + ">"
	}
	t := f.Kind().String()
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		t = string(f.Message().FullName())
	case protoreflect.EnumKind:
		t = string(f.Enum().FullName())
	}
	if f.Cardinality() == protoreflect.Repeated {
		t = "repeated " + t
	}
	return t
}

func (c *checker) enums(es protoreflect.EnumDescriptors) {
	for i := 0; i < es.Len(); i++ {
		old := es.Get(i)
		d, err := c.cur.FindDescriptorByName(old.FullName())
		cur, ok := d.(protoreflect.EnumDescriptor)
		if err != nil || !ok {
			c.add(old.FullName(), "enum removed")
			continue
		}
		for j := 0; j < old.Values().Len(); j++ {
			ov := old.Values().Get(j)
			el := fmt.Sprintf("%s (value %d)", ov.FullName(), ov.Number())
			switch cv := cur.Values().ByNumber(ov.Number()); {
			case cv == nil && !cur.ReservedRanges().Has(ov.Number()):
				c.add(el, "enum value removed")
			case cv != nil && cv.Name() != ov.Name():
				c.add(el, "enum value renamed to %s (breaks JSON, which uses value names)", cv.Name())
			}
		}
	}
}

func (c *checker) service(old protoreflect.ServiceDescriptor) {
	d, err := c.cur.FindDescriptorByName(old.FullName())
	cur, ok := d.(protoreflect.ServiceDescriptor)
	if err != nil || !ok {
		c.add(old.FullName(), "service removed")
		return
	}
	for i := 0; i < old.Methods().Len(); i++ {
		om := old.Methods().Get(i)
		cm := cur.Methods().ByName(om.Name())
		if cm == nil {
			c.add(om.FullName(), "method removed")
			continue
		}
		if om.Input().FullName() != cm.Input().FullName() {
			c.add(om.FullName(), "request type changed from %s to %s", om.Input().FullName(), cm.Input().FullName())
		}
		if om.Output().FullName() != cm.Output().FullName() {
			c.add(om.FullName(), "response type changed from %s to %s", om.Output().FullName(), cm.Output().FullName())
		}
		if om.IsStreamingClient() != cm.IsStreamingClient() || om.IsStreamingServer() != cm.IsStreamingServer() {
			c.add(om.FullName(), "streaming changed (client %v → %v, server %v → %v)",
				om.IsStreamingClient(), cm.IsStreamingClient(), om.IsStreamingServer(), cm.IsStreamingServer())
		}
	}
}
