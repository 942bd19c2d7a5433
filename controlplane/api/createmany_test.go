package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// CreateMany creates each object on its own: the good ones exist after the
// call with server fields set, each bad one has its own error.
func TestCreateManyPerObjectResults(t *testing.T) {
	c := startReady(t, 3)
	f, err := c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.MustClient(t, f.Addr)
	ctx := ctxT(t, 30*time.Second)
	mustCreate(t, cl, ns("many"))
	mustCreate(t, cl, pod("many", "taken", nil))
	bad := pod("many", "bad", nil)
	bad.Spec.Containers[0].Image = ""
	pods := []*apiv1.Pod{pod("many", "a", nil), pod("many", "taken", nil), bad, pod("nowhere", "b", nil), pod("many", "c", nil)}
	out, errs, err := client.CreateMany(ctx, cl, pods)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		code codes.Code
		msg  string
	}{{codes.OK, ""}, {codes.AlreadyExists, "taken"}, {codes.InvalidArgument, "image"}, {codes.NotFound, "nowhere"}, {codes.OK, ""}}
	for i, w := range want {
		if status.Code(errs[i]) != w.code || (w.msg != "" && !strings.Contains(errs[i].Error(), w.msg)) {
			t.Errorf("object %d: %v, want %s mentioning %q", i, errs[i], w.code, w.msg)
		}
	}
	for _, i := range []int{0, 4} {
		md := out[i].GetMetadata()
		if md.GetUid() == "" || md.GetResourceVersion() == "" || md.GetCreationTimestamp() == "" {
			t.Errorf("created pod %s lacks server fields: %v", md.GetName(), md)
		}
		if _, err := client.Get[*apiv1.Pod](ctx, cl, "many", md.GetName()); err != nil {
			t.Errorf("pod %s not readable after CreateMany: %v", md.GetName(), err)
		}
	}
	if out[1] != nil || out[2] != nil {
		t.Errorf("failed objects must have no result object: %v %v", out[1], out[2])
	}
}
