package manifest

import (
	"os"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// BenchmarkDecodeValidateDeployment: decode + default + validate of the
// example nginx Deployment, the per-object cost `ctl apply` and the API pay.
func BenchmarkDecodeValidateDeployment(b *testing.B) {
	data, err := os.ReadFile("../../../examples/nginx-deployment.yaml")
	if err != nil {
		b.Fatal(err)
	}
	dec := NewDecoder(kinds.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		d, err := dec.DecodeOne("bench", data)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Validate("bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeYAMLDeployment: the `get -o yaml` encoding cost.
func BenchmarkEncodeYAMLDeployment(b *testing.B) {
	data, _ := os.ReadFile("../../../examples/nginx-deployment.yaml")
	d, err := NewDecoder(kinds.NewRegistry()).DecodeOne("bench", data)
	if err != nil {
		b.Fatal(err)
	}
	d.Kind.Default(d.Object)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalYAML(d.Object); err != nil {
			b.Fatal(err)
		}
	}
}
