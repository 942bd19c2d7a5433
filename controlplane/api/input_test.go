package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The scheduler's Bind stores one string from the request, the node name,
// and refuses one that is not a DNS name (so not UTF-8 either).
func TestBindRefusesANodeNameThatIsNotUTF8(t *testing.T) {
	c := apitest.Start(t, 1, nil)
	ctx := ctxT(t, 30*time.Second)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := c.MustClient(t)
	mustCreate(t, admin, pod("default", "p", nil))
	resp, err := admin.API().Bind(ctx, &apiv1.BindRequest{Bindings: []*apiv1.Binding{{Namespace: "default", Name: "p", NodeName: "w\xff1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; codes.Code(r.GetCode()) != codes.InvalidArgument || !strings.Contains(r.GetMessage(), "target node name") {
		t.Fatalf("bind to a node name with invalid UTF-8: %v", r)
	}
}

// Request size is capped before anything is decoded: gRPC's default
// receive limit (4 MiB) refuses a larger message with ResourceExhausted.
func TestRequestSizeIsCapped(t *testing.T) {
	c := apitest.Start(t, 1, nil)
	ctx := ctxT(t, 30*time.Second)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := c.MustClient(t)
	big := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: "big", Namespace: "default"}, Data: map[string]string{"k": strings.Repeat("x", 5<<20)}}
	_, err := client.Create(ctx, admin, big)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Fatalf("a 5 MiB create: %v, want ResourceExhausted (larger than max)", err)
	}
}
