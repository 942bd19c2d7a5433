package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/dashboard/dashboardtest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

type liveMsg struct {
	Reset bool `json:"reset"`
	Frags []struct {
		ID, Parent, HTML string
		Del              bool
	} `json:"frags"`
}

// A page's live stream starts with every fragment, then sends only what a
// watch event changed: a new row, the one row whose pod changed, a
// deletion.
func TestLiveStreamSendsOnlyChanges(t *testing.T) {
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1, Loops: []string{}})
	s, err := e.Login(dashboardtest.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/live?page=pods", nil)
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	next := func(what string) liveMsg {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: stream ended: %v", what, err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var m liveMsg
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatalf("%s: %v in %q", what, err, data)
				}
				return m
			}
		}
	}
	ids := func(m liveMsg) []string {
		var out []string
		for _, f := range m.Frags {
			id := f.ID
			if f.Del {
				id = "-" + id
			}
			out = append(out, id)
		}
		sort.Strings(out)
		return out
	}
	if m := next("first message"); !m.Reset || strings.Join(ids(m), ",") != "pods-summary" {
		t.Fatalf("first message: reset %v, fragments %v; want a reset with the summary only", m.Reset, ids(m))
	}
	admin := e.Cluster.Admin()
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p1", Namespace: "default"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	if _, err := client.Create(ctx, admin, pod); err != nil {
		t.Fatal(err)
	}
	if m := next("after a create"); m.Reset || strings.Join(ids(m), ",") != "p/default/p1,pods-summary" || !strings.Contains(m.Frags[0].HTML, "Pending") {
		t.Fatalf("after a create: %v", ids(m))
	}
	patch := []byte(`{"status":{"reason":"Changed"}}`)
	if _, err := admin.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Pod", Namespace: "default", Name: "p1", Patch: patch, Status: true}); err != nil {
		t.Fatal(err)
	}
	if m := next("after a status change"); strings.Join(ids(m), ",") != "p/default/p1" || !strings.Contains(m.Frags[0].HTML, "(Changed)") {
		t.Fatalf("after a status change: %v, want p1's row only, showing the reason", ids(m))
	}
	if _, _, err := admin.Delete(ctx, "Pod", "default", "p1", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	if m := next("after a delete"); strings.Join(ids(m), ",") != "-p/default/p1,pods-summary" {
		t.Fatalf("after a delete: %v, want p1's row removed and the summary", ids(m))
	}
}
