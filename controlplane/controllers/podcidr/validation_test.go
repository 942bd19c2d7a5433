package podcidr_test

import (
	"context"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// An administrator may set a Node's podCIDR by hand, but only a range of
// the cluster range that no other Node's overlaps, and only once: every
// refusal is InvalidArgument naming spec.podCIDR (or spec.podCIDRs).
// Deleting the Node frees its range for another.
func TestAdminPodCIDRValidation(t *testing.T) {
	_, cl := start(t, small, -1) // 10.244.0.0/22 in /24s
	ctx := context.Background()
	if err := createNode(t, cl, "n1", "10.244.1.0/24"); err != nil {
		t.Fatalf("admin sets a free range: %v", err)
	}
	refused := []struct{ what, cidr, want string }{
		{"outside the cluster range", "10.245.0.0/24", `spec.podCIDR: "10.245.0.0/24" is not inside the cluster range 10.244.0.0/22`},
		{"larger than the cluster range", "10.244.0.0/21", `spec.podCIDR: "10.244.0.0/21" is not inside the cluster range 10.244.0.0/22`},
		{"the same range as n1", "10.244.1.0/24", `spec.podCIDR: "10.244.1.0/24" overlaps Node "n1"'s pod range 10.244.1.0/24`},
		{"a larger range holding n1's", "10.244.0.0/23", `spec.podCIDR: "10.244.0.0/23" overlaps Node "n1"'s pod range 10.244.1.0/24`},
		{"a smaller range inside n1's", "10.244.1.128/25", `spec.podCIDR: "10.244.1.128/25" overlaps Node "n1"'s pod range 10.244.1.0/24`},
		{"host bits set", "10.244.2.1/24", `spec.podCIDR: "10.244.2.1/24" has host bits set (did you mean 10.244.2.0/24?)`},
		{"not a CIDR", "10.244.2.0", `spec.podCIDR: "10.244.2.0" not a CIDR`},
	}
	for _, c := range refused {
		err := createNode(t, cl, "n2", c.cidr)
		if !client.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s (%s): %v\nwant InvalidArgument saying %s", c.what, c.cidr, err, c.want)
		}
	}
	_, err := client.Patch[*apiv1.Node](ctx, cl, "", "n1", []byte(`{"spec":{"podCIDR":"10.244.3.0/24","podCIDRs":["10.244.3.0/24"]}}`))
	if want := `spec.podCIDR: "10.244.3.0/24" may not be changed once set (it is 10.244.1.0/24`; !client.IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("change of a set range: %v, want InvalidArgument saying %s", err, want)
	}
	_, err = client.Patch[*apiv1.Node](ctx, cl, "", "n1", []byte(`{"spec":{"podCIDRs":["10.244.3.0/24"]}}`))
	if want := `spec.podCIDRs`; !client.IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("podCIDRs other than [podCIDR]: %v, want InvalidArgument naming %s", err, want)
	}
	if _, _, err := cl.Delete(ctx, "Node", "", "n1", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := createNode(t, cl, "n2", "10.244.0.0/23"); err != nil {
		t.Fatalf("n1's range is free once n1 is deleted: %v", err)
	}
}
