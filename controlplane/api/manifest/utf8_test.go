package manifest

import (
	"errors"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
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
