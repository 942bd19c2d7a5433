package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// Each exec, attach and port-forward the API server relays, refused ones
// too, is a line of the control node's audit log naming the caller, the
// pod, the container and the command.
func TestStreamCallsAreAudited(t *testing.T) {
	dir := t.TempDir()
	log, err := audit.Open(audit.Config{Dir: dir, MaxBytes: 1 << 20, MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ns := nodeStreams(nil, nil, log, nil)
	ns.Audit(context.Background(), api.StreamAudit{Identity: api.Identity{User: "admin", Groups: []string{pki.GroupAdmins}},
		Subresource: "exec", Namespace: "shop", Pod: "web-1", Node: "w1", Container: "app", Command: []string{"sh", "-c", "id"}})
	ns.Audit(context.Background(), api.StreamAudit{Identity: api.Identity{User: "user:bob", Groups: []string{pki.GroupViewers}},
		Subresource: "portforward", Namespace: "shop", Pod: "web-1", Port: 8080,
		Err: status.Error(codes.PermissionDenied, errors.New("viewers may read logs").Error())})
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit log:\n%s", b)
	}
	for _, want := range []string{`"user":"admin"`, `"role":"admin"`, `"verb":"create"`, `"kind":"Pod"`, `"subresource":"exec"`,
		`"namespace":"shop"`, `"name":"web-1"`, `"container":"app"`, `"command":["sh","-c","id"]`, `"code":"OK"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("exec record lacks %s: %s", want, lines[0])
		}
	}
	for _, want := range []string{`"user":"user:bob"`, `"subresource":"portforward"`, `"port":8080`, `"code":"PermissionDenied"`, `"result":"denied"`} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("refused port-forward record lacks %s: %s", want, lines[1])
		}
	}
}
