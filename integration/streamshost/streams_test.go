package streamshost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app: echo
  template:
    metadata:
      labels:
        app: echo
    spec:
      containers:
        - name: main
          image: REGISTRY/skiff/hello:1
          command: ["/bin/sh", "-c", "echo hello-from-$(hostname); exec sleep 3600"]
`

func TestStreamVerbsAcrossHosts(t *testing.T) {
	lab := hostlab.ForTest(t)
	ctlBin, regBin, err := hostlab.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	registry, err := lab.StartRegistry(regBin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The control node creates the default namespaces just after it serves.
	var applyErr error
	if !testutil.Eventually(30*time.Second, func() bool {
		_, applyErr = c.Apply(strings.ReplaceAll(manifest, "REGISTRY", registry))
		return applyErr == nil
	}) {
		t.Fatalf("apply: %v", applyErr)
	}
	var pod string
	testutil.WaitFor(t, 120*time.Second, "the echo pod running on w1", func() bool {
		ps, err := c.Pods("default", "app=echo")
		if err != nil || len(ps) != 1 || !ps[0].Ready() {
			return false
		}
		pod = ps[0].Metadata.Name
		return true
	})

	// exec from the administrator's machine: the API server on c1 relays
	// to w1's stream port (w1's own certificate, at w1's address).
	out, err := c.Ctl("exec", "deploy/echo", "--", "sh", "-c", "echo in-$(hostname)")
	if err != nil || strings.TrimSpace(out) != "in-"+pod {
		t.Fatalf("exec: %v %q", err, out)
	}
	_, err = c.Ctl("exec", pod, "--", "sh", "-c", "exit 5")
	var ee *hostlab.ExecError
	if !errors.As(err, &ee) || !strings.Contains(ee.Error(), "exit status 5") || !strings.Contains(ee.Stderr, "command terminated with exit code 5") {
		t.Fatalf("exec exit 5: %v", err)
	}
	out, err = c.Ctl("logs", "deploy/echo")
	if err != nil || strings.TrimSpace(out) != "hello-from-"+pod {
		t.Fatalf("logs: %v %q", err, out)
	}
	local := filepath.Join(lab.Dir, "copied-hostname")
	if out, err := c.Ctl("cp", pod+":/etc/hostname", local); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if b, err := os.ReadFile(local); err != nil || strings.TrimSpace(string(b)) != pod {
		t.Fatalf("copied /etc/hostname: %v %q", err, b)
	}

	// A viewer reads logs and is refused exec.
	bobConf := filepath.Join(lab.Dir, "bob.conf")
	if out, err := c.Ctl("user", "create", "bob", "--role", "viewer", "-o", bobConf); err != nil {
		t.Fatalf("user create: %v %s", err, out)
	}
	if out, err := c.Lab.Exec(c.Lab.Admin, c.Bin, "--config", bobConf, "logs", pod); err != nil || !strings.Contains(out, "hello-from-") {
		t.Fatalf("viewer logs: %v %q", err, out)
	}
	_, err = c.Lab.Exec(c.Lab.Admin, c.Bin, "--config", bobConf, "exec", pod, "--", "true")
	if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "no RBAC rule allows it") {
		t.Fatalf("viewer exec: %v", err)
	}

	// Both execs of the admin and the refused one are in c1's audit log.
	b, err := os.ReadFile(c.Controls[0].Path("/var/lib/skiff/audit/audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var execs, refused int
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"subresource":"exec"`) {
			continue
		}
		if strings.Contains(line, `"user":"admin"`) && strings.Contains(line, `"command":["sh","-c","exit 5"]`) && strings.Contains(line, `"container":"main"`) {
			execs++
		}
		if strings.Contains(line, `"user":"user:bob"`) && strings.Contains(line, `"code":"PermissionDenied"`) {
			refused++
		}
	}
	if execs != 1 || refused != 1 {
		t.Fatalf("audit log: %d exec records of exit 5, %d refused viewer execs; want 1 and 1:\n%s", execs, refused, b)
	}
}
