package bootstrap_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The Go API package registers the descriptors TestPythonCodeIsCurrent compares.
var _ = apiv1.File_api_v1_meta_proto

// debianPython is the interpreter Debian's python3-grpcio and
// python3-protobuf are installed for (`make deps`); a python3 earlier on
// PATH (pyenv, a venv) may lack them.
const debianPython = "/usr/bin/python3"

// pythonClientDir is clients/python, relative to this package.
var pythonClientDir = filepath.Join("..", "..", "clients", "python")

// requirePython skips only when the interpreter or its gRPC packages are
// truly absent (`make deps` installs them, so CI never skips).
func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s is absent (make deps installs python3): %v", debianPython, err)
	}
	out, err := exec.Command(debianPython, "-c", "import grpc, google.protobuf, yaml").CombinedOutput()
	if err != nil {
		t.Skipf("%s lacks python3-grpcio, python3-protobuf or python3-yaml (make deps installs them): %s",
			debianPython, strings.TrimSpace(string(out)))
	}
}

// TestPythonClientUnits runs the Python client's tests that need no
// cluster: the config file reader (bad input named) and the envelope.
func TestPythonClientUnits(t *testing.T) {
	requirePython(t)
	cmd := exec.Command(debianPython, "-m", "unittest", "discover", "-s", "tests", "-p", "test_*.py", "-v")
	cmd.Dir = pythonClientDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unit tests: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestPythonCodeIsCurrent: the descriptors compiled into the Python
// client's generated modules are those of the Go code, i.e. `make proto`
// regenerated both after the last .proto change.
func TestPythonCodeIsCurrent(t *testing.T) {
	requirePython(t)
	script := `import base64, importlib, pkgutil, skiff.api.v1 as v1
for m in pkgutil.iter_modules(v1.__path__):
    if m.name.endswith("_pb2"):
        d = importlib.import_module("skiff.api.v1." + m.name).DESCRIPTOR
        print(d.name, base64.b64encode(d.serialized_pb).decode())`
	cmd := exec.Command(debianPython, "-c", script)
	cmd.Dir = pythonClientDir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read the Python modules' descriptors: %v", err)
	}
	inPython := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, b64, _ := strings.Cut(line, " ")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var py descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &py); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fd, err := protoregistry.GlobalFiles.FindFileByPath(name)
		if err != nil {
			t.Errorf("the Python client has %s, which the Go code does not: run `make proto`", name)
			continue
		}
		inPython[name] = true
		goFile := protodesc.ToFileDescriptorProto(fd)
		if !proto.Equal(withoutJSONNames(&py), withoutJSONNames(goFile)) {
			t.Errorf("%s differs between the Python and the Go generated code: run `make proto`", name)
		}
	}
	protoregistry.GlobalFiles.RangeFilesByPackage("skiff.api.v1", func(fd protoreflect.FileDescriptor) bool {
		if !inPython[fd.Path()] {
			t.Errorf("the Python client lacks %s: run `make proto`", fd.Path())
		}
		return true
	})
}

// withoutJSONNames drops json_name, which protoc fills in for Go plugins
// but not in Python's serialized descriptors; it is derived from the name.
func withoutJSONNames(fd *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
	fd = proto.Clone(fd).(*descriptorpb.FileDescriptorProto)
	var clear func(ms []*descriptorpb.DescriptorProto)
	clear = func(ms []*descriptorpb.DescriptorProto) {
		for _, m := range ms {
			for _, f := range append(m.Field, m.Extension...) {
				f.JsonName = nil
			}
			clear(m.NestedType)
		}
	}
	clear(fd.MessageType)
	for _, x := range fd.Extension {
		x.JsonName = nil
	}
	return fd
}

// TestPythonClient runs the Python client's test (clients/python/tests/
// cluster_test.py) against three control nodes made with ctl init and ctl
// join, with client configs from `ctl user create`. When the script says
// its watch is on the leader, the test kills that node (SIGKILL); the
// script then checks its watch resumes elsewhere with no event missed or
// repeated.
func TestPythonClient(t *testing.T) {
	requirePython(t)
	c, controlToken, _ := newCluster(t, "p1")
	c.joinControl(t, "p2", controlToken)
	c.joinControl(t, "p3", controlToken)
	c.waitMembers(t, 60*time.Second, voters("p1", "p2", "p3"))
	dir := t.TempDir()
	admin, viewer := filepath.Join(dir, "py-admin.conf"), filepath.Join(dir, "py-viewer.conf")
	c.mustCtl(t, "user", "create", "py-admin", "--role", "admin", "-o", admin)
	c.mustCtl(t, "user", "create", "py-viewer", "--role", "viewer", "-o", viewer)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, "-u", filepath.Join("tests", "cluster_test.py"),
		"--config", admin, "--viewer-config", viewer)
	cmd.Dir = pythonClientDir
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var transcript []string
	passed, killed := false, ""
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		transcript = append(transcript, line)
		switch {
		case strings.HasPrefix(line, "KILL-LEADER "):
			killed = strings.TrimPrefix(line, "KILL-LEADER ")
			if err := c.killNode(killed); err != nil {
				t.Errorf("%v", err)
				_, _ = io.WriteString(stdin, "NOT-KILLED\n")
				continue
			}
			_, _ = io.WriteString(stdin, "KILLED\n")
		case line == "PASS":
			passed = true
		}
	}
	waitErr := cmd.Wait()
	if !passed || waitErr != nil {
		t.Fatalf("python client test failed (%v):\n%s\n--- stderr:\n%s", waitErr, strings.Join(transcript, "\n"), stderr.String())
	}
	if killed == "" {
		t.Fatalf("the python test passed without asking for the leader to be killed:\n%s", strings.Join(transcript, "\n"))
	}
	t.Logf("python client test:\n%s", strings.Join(transcript, "\n"))

	t.Run("ExampleListsPodsAndFollowsEvents", func(t *testing.T) {
		dir := t.TempDir()
		c.eventuallyCtl(t, 45*time.Second, "apply", "-f", writeFile(t, dir, "pod.yaml", `apiVersion: v1
kind: Pod
metadata:
  name: py-example
  namespace: default
spec:
  containers:
  - name: c
    image: busybox
`))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var out, errOut testutil.SyncBuffer
		ex := exec.CommandContext(ctx, debianPython, "-u", filepath.Join("examples", "pods_and_events.py"),
			"--config", viewer, "--exit-after", "1")
		ex.Dir, ex.Stdout, ex.Stderr = pythonClientDir, &out, &errOut
		if err := ex.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- ex.Wait() }()
		testutil.WaitFor(t, 60*time.Second, "the example to list the pod and start following events", func() bool {
			return strings.Contains(out.String(), "following events from resourceVersion")
		})
		if !strings.Contains(out.String(), "py-example") {
			t.Fatalf("the example did not list pod py-example:\n%s", out.String())
		}
		c.eventuallyCtl(t, 45*time.Second, "apply", "-f", writeFile(t, dir, "event.yaml", `apiVersion: v1
kind: Event
metadata:
  name: py-example.1
  namespace: default
involvedObject:
  kind: Pod
  namespace: default
  name: py-example
reason: Checked
message: seen by the python example
type: Normal
`))
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), "event Normal Pod default/py-example Checked: seen by the python example") {
				t.Fatalf("example exited (%v) without printing the event:\n%s\n--- stderr:\n%s", err, out.String(), errOut.String())
			}
		case <-ctx.Done():
			t.Fatalf("the example did not see the event:\n%s\n--- stderr:\n%s", out.String(), errOut.String())
		}
	})
}

// killNode crashes the control node named name (SIGKILL).
func (c *cluster) killNode(name string) error {
	for _, n := range c.nodes {
		if n.name == name && n.running() {
			n.p.kill()
			return nil
		}
	}
	return fmt.Errorf("no running control node %q to kill", name)
}
