package compat_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// anchor is protoc-gen-doc's anchor of a message, enum or service.
func anchor(name protoreflect.FullName) string {
	return `<a name="` + strings.ReplaceAll(string(name), ".", "-") + `">`
}

// TestReferenceDocsAreCurrent: docs/api names every message, enum, service
// and method of the published packages, so a .proto changed without
// `make proto` (which regenerates the reference) fails here.
func TestReferenceDocsAreCurrent(t *testing.T) {
	for _, p := range []struct {
		pkg protoreflect.FullName
		doc string
	}{{"skiff.api.v1", "api-v1.md"}, {"skiff.admin.v1", "admin-v1.md"}, {"skiff.stream.v1", "stream-v1.md"}} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "api", p.doc))
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		need := func(what string, name protoreflect.FullName, text string) {
			if !strings.Contains(doc, text) {
				t.Errorf("docs/api/%s lacks %s %s: run `make proto`", p.doc, what, name)
			}
		}
		var messages func(ms protoreflect.MessageDescriptors)
		messages = func(ms protoreflect.MessageDescriptors) {
			for i := 0; i < ms.Len(); i++ {
				m := ms.Get(i)
				if m.IsMapEntry() {
					continue
				}
				need("message", m.FullName(), anchor(m.FullName()))
				for j := 0; j < m.Fields().Len(); j++ {
					f := m.Fields().Get(j)
					need("field", f.FullName(), "| "+string(f.Name())+" | ")
				}
				for j := 0; j < m.Enums().Len(); j++ {
					need("enum", m.Enums().Get(j).FullName(), anchor(m.Enums().Get(j).FullName()))
				}
				messages(m.Messages())
			}
		}
		protoregistry.GlobalFiles.RangeFilesByPackage(p.pkg, func(fd protoreflect.FileDescriptor) bool {
			messages(fd.Messages())
			for i := 0; i < fd.Enums().Len(); i++ {
				need("enum", fd.Enums().Get(i).FullName(), anchor(fd.Enums().Get(i).FullName()))
			}
			for i := 0; i < fd.Services().Len(); i++ {
				s := fd.Services().Get(i)
				need("service", s.FullName(), anchor(s.FullName()))
				for j := 0; j < s.Methods().Len(); j++ {
					need("method", s.Methods().Get(j).FullName(), "| "+string(s.Methods().Get(j).Name())+" | [")
				}
			}
			return true
		})
	}
}
