package manifest

import (
	"errors"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestInvalidUTF8IsReportedWithItsLine(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	in := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  annotations:\n    note: \"grüße \xff\"\n"
	_, err := dec.Decode("cm.yaml", []byte(in))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("decode: %v, want ErrInvalid", err)
	}
	// Line 6; column 18 counts characters (ü and ß are one each).
	if want := "cm.yaml:6: column 18: byte 0xff is not valid UTF-8"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want it to contain %q", err, want)
	}
	// Valid multi-byte text decodes.
	good := strings.ReplaceAll(in, "\xff", "🚢")
	docs, err := dec.Decode("cm.yaml", []byte(good))
	if err != nil || len(docs) != 1 {
		t.Fatalf("valid UTF-8: %v", err)
	}
	if got := docs[0].Object.GetMetadata().GetAnnotations()["note"]; got != "grüße 🚢" {
		t.Fatalf("annotation %q", got)
	}
}

// An object stored before the API checked UTF-8 still prints, with U+FFFD
// for the bad bytes (values and map keys, nested too).
func TestObjectWithInvalidUTF8StillPrints(t *testing.T) {
	cm := &apiv1.ConfigMap{ApiVersion: "v1", Kind: "ConfigMap",
		Metadata: &apiv1.ObjectMeta{Name: "cm", Namespace: "default", Annotations: map[string]string{"note": "a\xffb", "k\xfe": "v"}},
		Data:     map[string]string{"fine": "日本"}}
	out, err := MarshalYAML(cm)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	for _, want := range []string{"note: a\uFFFDb", "k\uFFFD: v", "fine: 日本"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if cm.Metadata.Annotations["note"] != "a\xffb" {
		t.Error("the caller's object was changed")
	}
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p"}, Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Args: []string{"ok", "\xff"}}}}}
	if out, err := MarshalJSON(pod); err != nil || !strings.Contains(string(out), `"\ufffd"`) && !strings.Contains(string(out), "\uFFFD") {
		t.Fatalf("pod: %s %v", out, err)
	}
}
