package api_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// grpcurlPath finds grpcurl on PATH or where `go install` puts it
// (`make deps` installs it there).
func grpcurlPath() string {
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "grpcurl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestGrpcurlListsAndCalls runs the real grpcurl against a follower: it
// lists the services through server reflection, describes the API, and
// calls Version and the health service with the client certificate.
func TestGrpcurlListsAndCalls(t *testing.T) {
	bin := grpcurlPath()
	if bin == "" {
		t.Skip("grpcurl is not installed (make deps installs it with go install)")
	}
	c := startReady(t, 3)
	f, err := c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := c.WriteClientConfig(dir, "admin"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		full := append([]string{"-max-time", "20", "-cacert", filepath.Join(dir, "ca.crt"),
			"-cert", filepath.Join(dir, "admin.crt"), "-key", filepath.Join(dir, "admin.key"), f.Addr}, args...)
		out, err := exec.Command(bin, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	list := run("list")
	for _, want := range []string{"skiff.api.v1.API", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(list, want) {
			t.Errorf("grpcurl list lacks %s:\n%s", want, list)
		}
	}
	if desc := run("describe", "skiff.api.v1.API"); !strings.Contains(desc, "rpc Create") || !strings.Contains(desc, "rpc Watch") {
		t.Errorf("describe skiff.api.v1.API:\n%s", desc)
	}
	if v := run("skiff.api.v1.API/Version"); !strings.Contains(v, "{") {
		t.Errorf("Version call: %s", v)
	}
	if h := run("grpc.health.v1.Health/Check"); !strings.Contains(h, "SERVING") {
		t.Errorf("health check: %s", h)
	}
	// Without a client certificate the API refuses the caller.
	out, err := exec.Command(bin, "-max-time", "10", "-cacert", filepath.Join(dir, "ca.crt"), f.Addr, "list").CombinedOutput()
	if err == nil {
		t.Errorf("grpcurl without a client certificate succeeded:\n%s", out)
	}
}
