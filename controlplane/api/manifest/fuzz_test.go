package manifest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// FuzzDecodeDefaultValidate feeds arbitrary bytes through decode, defaults,
// validation, printing and encoding. It must never panic, and whatever
// decodes must survive an encode/decode round trip unchanged. Seeds: the
// repository's examples/, testdata/good and the bad corpus. Without -fuzz (as in
// `make test`) only the seeds run; `make fuzz` runs it for FUZZ_TIME.
func FuzzDecodeDefaultValidate(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"../../../examples/*.yaml", "testdata/good/*.yaml", "testdata/bad/*.yaml"} {
		m, _ := filepath.Glob(pattern)
		seeds = append(seeds, m...)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":1,"targetPort":"x"}]}}`))
	f.Add([]byte("a: &a [*a, *a]\n"))
	reg := kinds.NewRegistry()
	dec := NewDecoder(reg)
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, _ := dec.Decode("fuzz", data)
		for _, d := range docs {
			_ = d.Validate("fuzz")
			d.Kind.Row(d.Object, now)
			y, err := MarshalYAML(d.Object)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			back, err := dec.DecodeOne("roundtrip", y)
			if err != nil {
				t.Fatalf("encoded object does not decode: %v\n%s", err, y)
			}
			if !proto.Equal(back.Object, d.Object) {
				t.Fatalf("round trip changed the object:\n%s", y)
			}
			obj := proto.Clone(d.Object).(kinds.Object)
			d.Kind.Default(obj)
			d.Kind.Validate(obj)
			d.Kind.ValidateUpdate(d.Object, obj)
			d.Kind.Row(obj, now)
			if _, err := MarshalJSON(obj); err != nil {
				t.Fatalf("encode defaulted: %v", err)
			}
		}
	})
}
