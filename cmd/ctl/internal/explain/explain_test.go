package explain

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The embedded descriptors match the compiled-in ones: every message and
// field of the API has an entry (else `make proto` was not run after a
// .proto change).
func TestEmbeddedDescriptorsAreCurrent(t *testing.T) {
	comments, err := Comments()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	protoregistry.GlobalFiles.RangeFilesByPackage("skiff.api.v1", func(fd protoreflect.FileDescriptor) bool {
		var walk func(msgs protoreflect.MessageDescriptors)
		walk = func(msgs protoreflect.MessageDescriptors) {
			for i := range msgs.Len() {
				m := msgs.Get(i)
				if m.IsMapEntry() {
					continue
				}
				if _, ok := comments[m.FullName()]; !ok {
					missing = append(missing, string(m.FullName()))
				}
				for j := range m.Fields().Len() {
					if _, ok := comments[m.Fields().Get(j).FullName()]; !ok {
						missing = append(missing, string(m.Fields().Get(j).FullName()))
					}
				}
				walk(m.Messages())
			}
		}
		walk(fd.Messages())
		return true
	})
	if len(missing) > 0 {
		t.Fatalf("api-v1.binpb lacks %d names (run make proto): %v", len(missing), missing)
	}
}

func pdbKind() Kind {
	return Kind{Name: "PodDisruptionBudget", Group: "policy", Version: "policy/v1", Message: (&apiv1.PodDisruptionBudget{}).ProtoReflect().Descriptor()}
}

func TestExplainFieldFromComments(t *testing.T) {
	var b bytes.Buffer
	if err := Explain(&b, pdbKind(), []string{"spec", "minAvailable"}, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"KIND:       PodDisruptionBudget", "FIELD: minAvailable <IntOrString>", "an eviction is allowed only if at least this many"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain pdb.spec.minAvailable lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := Explain(&b, pdbKind(), []string{"spec"}, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  selector\t<LabelSelector>") || !strings.Contains(b.String(), "selector chooses the pods the budget covers") {
		t.Fatalf("explain pdb.spec:\n%s", b.String())
	}
	b.Reset()
	if err := Explain(&b, pdbKind(), nil, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "      matchLabels\t<map[string]string>") {
		t.Fatalf("explain --recursive:\n%s", b.String())
	}
	if err := Explain(&b, pdbKind(), []string{"spec", "nope"}, false); !errors.Is(err, ErrNoField) || !strings.Contains(err.Error(), "minAvailable, selector") {
		t.Fatalf("unknown field: %v", err)
	}
}
