package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestApplyAndDeleteWhileLeadershipMoves: `ctl apply -f` and then
// `ctl delete -f` of many objects while leadership moves between the three
// control nodes again and again (a transfer every 100 ms, as a starved
// leader loses it under load). A write caught by a change of leader may
// have committed or not: the API server settles it by reading its object
// back from the new leader (creates and updates), the client settles a
// delete by reading the object. Every object is reported created, then
// deleted, each command exits 0 and nothing is left.
func TestApplyAndDeleteWhileLeadershipMoves(t *testing.T) {
	e := newEnv(t, 3)
	const n = 400
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%03d\ndata:\n  k: v\n", i)
	}
	file := filepath.Join(t.TempDir(), "many.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// moving runs f while leadership is transferred every 100 ms.
	moving := func(f func()) int {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		transfers := 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if l, err := e.c.Leader(5 * time.Second); err == nil && l.Node.Store().TransferLeadership() == nil {
					transfers++
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		f()
		cancel()
		wg.Wait()
		return transfers
	}
	var out, errs string
	var code int
	transfers := moving(func() { out, errs, code = e.ctl("", "apply", "-f", file) })
	t.Logf("%d leadership transfers during apply -f", transfers)
	if code != 0 {
		t.Fatalf("apply -f while leadership moves: exit %d\n%s", code, errs)
	}
	if got := strings.Count(out, " created\n"); got != n {
		t.Errorf("apply -f reported %d objects created, want %d:\n%s", got, n, out)
	}
	transfers = moving(func() { out, errs, code = e.ctl("", "delete", "-f", file) })
	t.Logf("%d leadership transfers during delete -f", transfers)
	if code != 0 {
		t.Fatalf("delete -f while leadership moves: exit %d\n%s", code, errs)
	}
	if got := strings.Count(out, " deleted\n"); got != n {
		t.Errorf("delete -f reported %d objects deleted, want %d:\n%s", got, n, out)
	}
	cl, cctx := e.apiClient()
	left, _, err := client.List[*apiv1.ConfigMap](cctx, cl, client.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range left {
		if strings.HasPrefix(cm.GetMetadata().GetName(), "cm-") {
			t.Errorf("left after delete -f: %s", cm.GetMetadata().GetName())
		}
	}
}
