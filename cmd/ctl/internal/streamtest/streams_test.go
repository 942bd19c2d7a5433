package streamtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

func sleeper(name string) *apiv1.Container {
	return &apiv1.Container{Name: name, Command: []string{"sh", "-c", "exec sleep 3600"}}
}

// One cluster for the verbs: each subtest uses its own pod.
func TestStreamVerbs(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()

	t.Run("ExecStdinAndExitCode", func(t *testing.T) {
		l.runPod("exec", "Always", sleeper("app"), sleeper("side"))
		out, errOut, code := l.ctl(ctx, "admin", strings.NewReader("hello\n"), "exec", "-i", "exec", "-c", "side", "--",
			"sh", "-c", "read x; echo got:$x; echo to-stderr >&2; exit 7")
		if code != 7 || out != "got:hello\n" || !strings.Contains(errOut, "to-stderr") || !strings.Contains(errOut, "command terminated with exit code 7") {
			t.Fatalf("exec: code %d, stdout %q, stderr %q; want 7, got:hello, to-stderr", code, out, errOut)
		}
		// No -c: the first container, saying so as kubectl does.
		out, errOut, code = l.ctl(ctx, "admin", nil, "exec", "pod/exec", "--", "hostname")
		if code != 0 || strings.TrimSpace(out) != "exec" || !strings.Contains(errOut, `Defaulted container "app" out of: app, side`) {
			t.Fatalf("exec hostname: code %d, out %q, err %q", code, out, errOut)
		}
		l.expectAudit(t, "exec", "exec", "side", "sh -c read x; echo got:$x; echo to-stderr >&2; exit 7")
	})

	t.Run("ExecTTY", func(t *testing.T) {
		l.runPod("tty", "Always", sleeper("app"))
		// The local terminal is a real pseudo-terminal: ctl puts it in raw
		// mode and asks for a terminal in the container.
		master, slavePath, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		slave, err := os.OpenFile(slavePath, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer slave.Close()
		if err := master.Resize(console.WinSize{Width: 91, Height: 17}); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(200 * time.Millisecond) // typed while the command waits (it reads after printing)
			_, _ = master.Write([]byte("typed\r"))
		}()
		var out, errOut syncBuffer
		code := mainWith(l, "admin", slave, &out, &errOut, "exec", "-it", "tty", "--",
			"sh", "-c", "test -t 0 && echo is-a-tty; stty size; read x; echo got:$x; exit 3")
		got := strings.ReplaceAll(out.String(), "\r", "")
		if code != 3 || !strings.Contains(got, "is-a-tty\n") || !strings.Contains(got, "17 91\n") || !strings.Contains(got, "got:typed\n") {
			t.Fatalf("exec -it: code %d, output %q, stderr %q; want 3, a terminal of 17x91 that read \"typed\"", code, got, errOut.String())
		}
	})

	t.Run("ViewerAndNodeRefused", func(t *testing.T) {
		l.runPod("guarded", "Always", &apiv1.Container{Name: "app", Command: []string{"sh", "-c", "echo visible-to-viewers; exec sleep 3600"}})
		testutil.WaitFor(t, 10*time.Second, "viewer reads logs", func() bool {
			out, _, code := l.ctl(ctx, "user:viewer-bob", nil, "logs", "guarded")
			return code == 0 && out == "visible-to-viewers\n"
		})
		for _, args := range [][]string{
			{"exec", "guarded", "--", "true"},
			{"attach", "guarded"},
			{"cp", "guarded:/etc/passwd", filepath.Join(t.TempDir(), "x")},
		} {
			_, errOut, code := l.ctl(ctx, "user:viewer-bob", nil, args...)
			if code != 1 || !strings.Contains(errOut, "no RBAC rule allows it") {
				t.Fatalf("viewer %v: code %d, %q; want refused", args, code, errOut)
			}
		}
		_, errOut, code := l.ctl(ctx, "node:"+l.node, nil, "exec", "guarded", "--", "true")
		if code != 1 || !strings.Contains(errOut, "a node may not") {
			t.Fatalf("node exec: code %d, %q; want refused", code, errOut)
		}
		_, errOut, code = l.ctl(ctx, "node:"+l.node, nil, "logs", "guarded")
		if code != 1 || !strings.Contains(errOut, "a node may not") {
			t.Fatalf("node logs: code %d, %q; want refused", code, errOut)
		}
		l.expectAuditRefused(t, "user:viewer-bob", "exec", "guarded")
	})

	t.Run("NodePortOnlyForControlNodes", func(t *testing.T) {
		p := l.runPod("direct", "Always", sleeper("app"))
		otherID, _ := pki.NodeIdentity("w-other")
		adminCert := l.issue(pki.AdminIdentity(), false)
		controlID, _ := pki.ControlIdentity("c1")
		for name, tc := range map[string]struct {
			src  pki.StaticCert
			want bool
		}{
			"another worker": {l.issue(otherID, true, "127.0.0.1"), false},
			"the admin":      {adminCert, false},
			"a control node": {l.issue(controlID, true, "127.0.0.1"), true},
		} {
			err := l.dialNodeExec(tc.src, p)
			if tc.want && err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !tc.want && err == nil {
				t.Fatalf("%s ran a command through the node's stream port", name)
			}
			t.Logf("%s: %v", name, err)
		}
	})

	t.Run("LogsFollowAcrossRestartAndPrevious", func(t *testing.T) {
		l.runPod("crashy", "Always", &apiv1.Container{Name: "app", Command: []string{"sh", "-c",
			"echo instance-$(cat /proc/sys/kernel/random/uuid); i=0; while [ $i -lt 3 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done; exit 1"}})
		out, _, stop := l.background("admin", "logs", "-f", "crashy")
		instances := regexp.MustCompile(`instance-[0-9a-f-]+`)
		testutil.WaitFor(t, 30*time.Second, "logs -f shows two instances of the container", func() bool {
			return len(uniq(instances.FindAllString(out.String(), -1))) >= 2
		})
		if err := stop(); err != nil {
			t.Fatalf("logs -f: %v", err)
		}
		// --previous is the instance before the current one: one instance
		// line, other than the current's.
		var prev, cur string
		testutil.WaitFor(t, 20*time.Second, "previous and current instances differ", func() bool {
			p, _, c1 := l.ctl(ctx, "admin", nil, "logs", "crashy", "--previous")
			c, _, c2 := l.ctl(ctx, "admin", nil, "logs", "crashy")
			pi, ci := instances.FindAllString(p, -1), instances.FindAllString(c, -1)
			if c1 != 0 || c2 != 0 || len(pi) != 1 || len(ci) != 1 || pi[0] == ci[0] {
				return false
			}
			prev, cur = p, c
			return strings.Contains(p, "tick-2")
		})
		t.Logf("previous:\n%scurrent:\n%s", prev, cur)
		out2, _, code := l.ctl(ctx, "admin", nil, "logs", "crashy", "--previous", "--tail", "1", "--timestamps")
		if code != 0 || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ tick-2\n$`).MatchString(out2) {
			t.Fatalf("logs --previous --tail 1 --timestamps: %q", out2)
		}
		l.runPod("steady", "Always", sleeper("app"))
		_, errOut, code := l.ctl(ctx, "admin", nil, "logs", "steady", "--previous")
		if code != 1 || !strings.Contains(errOut, "previous terminated container not found") {
			t.Fatalf("--previous of a container that never restarted: code %d %q", code, errOut)
		}
	})

	t.Run("LogsSelectorPrefixAllContainers", func(t *testing.T) {
		l.runPod("multi", "Always",
			&apiv1.Container{Name: "a", Command: []string{"sh", "-c", "echo from-a; exec sleep 3600"}},
			&apiv1.Container{Name: "b", Command: []string{"sh", "-c", "echo from-b; exec sleep 3600"}})
		testutil.WaitFor(t, 10*time.Second, "both containers logged", func() bool {
			out, _, code := l.ctl(ctx, "admin", nil, "logs", "-l", "app=multi", "--all-containers", "--prefix")
			return code == 0 && strings.Contains(out, "[pod/multi/a] from-a\n") && strings.Contains(out, "[pod/multi/b] from-b\n")
		})
		out, _, code := l.ctl(ctx, "admin", nil, "logs", "multi", "-c", "b", "--since", "1h")
		if code != 0 || out != "from-b\n" {
			t.Fatalf("logs -c b --since 1h: %d %q", code, out)
		}
	})

	t.Run("LogsOfJobAndAttach", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tmpl := &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"job": "report"}},
			Spec: &apiv1.PodSpec{RestartPolicy: "Never", Containers: []*apiv1.Container{{Name: "main", Image: l.image}}}}
		job, err := client.Create(cctx, l.admin, &apiv1.Job{Metadata: &apiv1.ObjectMeta{Name: "report", Namespace: "default"},
			Spec: &apiv1.JobSpec{Template: tmpl}})
		if err != nil {
			t.Fatal(err)
		}
		// The pod the job controller would make (no controllers run here).
		ctrl := true
		l.runPodOwned("report-x1", "Never", &apiv1.OwnerReference{ApiVersion: "batch/v1", Kind: "Job", Name: "report", Uid: job.GetMetadata().GetUid(), Controller: &ctrl},
			&apiv1.Container{Name: "main", Command: []string{"sh", "-c", "echo report-started; while true; do echo beat; usleep 200000; done"}})
		testutil.WaitFor(t, 10*time.Second, "logs job/report", func() bool {
			out, _, code := l.ctl(ctx, "admin", nil, "logs", "job/report", "--tail", "-1")
			return code == 0 && strings.HasPrefix(out, "report-started\n")
		})
		// attach: output from now on, not what was written before.
		out, _, stop := l.background("admin", "attach", "report-x1")
		testutil.WaitFor(t, 10*time.Second, "attach shows new output", func() bool { return strings.Contains(out.String(), "beat\n") })
		if err := stop(); err != nil {
			t.Fatalf("attach: %v", err)
		}
		if strings.Contains(out.String(), "report-started") {
			t.Fatalf("attach printed output from before it attached: %q", out.String())
		}
		l.expectAudit(t, "attach", "report-x1", "main", "")
		_, errOut, code := l.ctl(ctx, "admin", nil, "attach", "-i", "report-x1")
		if code != 1 || !strings.Contains(errOut, `container "main" does not keep stdin open (its spec has no stdin: true)`) {
			t.Fatalf("attach -i: %d %q", code, errOut)
		}
	})

	t.Run("PortForwardParallelHTTP", func(t *testing.T) {
		l.runPod("web", "Always", &apiv1.Container{Name: "web", Command: []string{"sh", "-c",
			"mkdir -p /www && for i in 0 1 2 3 4 5 6 7; do echo page-$i > /www/p$i; done && exec httpd -f -p 8080 -h /www"},
			Ports: []*apiv1.ContainerPort{{Name: "http", ContainerPort: 8080}}})
		out, errOut, stop := l.background("admin", "port-forward", "pod/web", ":http")
		var addr string
		re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8080`)
		testutil.WaitFor(t, 10*time.Second, "port-forward listening", func() bool {
			m := re.FindStringSubmatch(out.String())
			if m != nil {
				addr = m[1]
			}
			return m != nil
		})
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		// httpd listens a moment after the container starts.
		testutil.WaitFor(t, 10*time.Second, "httpd answers through the port-forward", func() bool {
			resp, err := hc.Get("http://" + addr + "/p0")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		before := strings.Count(out.String(), "Handling connection for 8080")
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for round := 0; round < 4; round++ {
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := hc.Get(fmt.Sprintf("http://%s/p%d", addr, i))
					if err != nil {
						errs <- err
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if string(b) != fmt.Sprintf("page-%d\n", i) {
						errs <- fmt.Errorf("p%d: %d %q", i, resp.StatusCode, b)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("through port-forward: %v", err)
		}
		if err := stop(); err != nil {
			t.Fatalf("port-forward: %v (%s)", err, errOut.String())
		}
		if n := strings.Count(out.String(), "Handling connection for 8080") - before; n != 32 {
			t.Fatalf("%d connections handled, want 32", n)
		}
		l.expectAudit(t, "portforward", "web", "", "")
	})

	t.Run("PortForwardService", func(t *testing.T) {
		l.runPod("svcweb", "Always", &apiv1.Container{Name: "web", Command: []string{"sh", "-c",
			"mkdir -p /www && echo via-service > /www/index.html && exec httpd -f -p 8081 -h /www"}})
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := client.Create(cctx, l.admin, &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: "svcweb", Namespace: "default"},
			Spec: &apiv1.ServiceSpec{Selector: map[string]string{"app": "svcweb"}, Ports: []*apiv1.ServicePort{{Name: "http", Port: 80, TargetPort: "8081"}}}}); err != nil {
			t.Fatal(err)
		}
		out, _, stop := l.background("admin", "port-forward", "svc/svcweb", "0:80")
		re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8081`)
		var addr string
		testutil.WaitFor(t, 10*time.Second, "port-forward to the service's pod", func() bool {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				addr = m[1]
			}
			return addr != ""
		})
		var body string
		testutil.WaitFor(t, 10*time.Second, "the service's pod answers through the port-forward", func() bool {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			return resp.StatusCode == http.StatusOK
		})
		if body != "via-service\n" {
			t.Fatalf("service port-forward: %q", body)
		}
		_ = stop()
	})

	t.Run("CopyBothWays", func(t *testing.T) {
		l.runPod("files", "Always", sleeper("app"))
		src := t.TempDir()
		big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
		if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"a.txt": "alpha\n", "sub/b.bin": big} {
			if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, errOut, code := l.ctl(ctx, "admin", nil, "cp", src, "files:/tmp/data"); code != 0 {
			t.Fatalf("cp to pod: %d %s", code, errOut)
		}
		out, _, code := l.ctl(ctx, "admin", nil, "exec", "files", "--", "sh", "-c", "cat /tmp/data/a.txt; wc -c < /tmp/data/sub/b.bin")
		if code != 0 || out != "alpha\n"+strconv.Itoa(len(big))+"\n" {
			t.Fatalf("in the pod after cp: %q", out)
		}
		dst := filepath.Join(t.TempDir(), "back")
		if _, errOut, code := l.ctl(ctx, "admin", nil, "cp", "default/files:/tmp/data", dst); code != 0 {
			t.Fatalf("cp from pod: %d %s", code, errOut)
		}
		for name, content := range map[string]string{"a.txt": "alpha\n", "sub/b.bin": big} {
			b, err := os.ReadFile(filepath.Join(dst, name))
			if err != nil || string(b) != content {
				t.Fatalf("%s after the round trip: %v (%d bytes)", name, err, len(b))
			}
		}
		// One file to a new name.
		if _, errOut, code := l.ctl(ctx, "admin", nil, "cp", "files:/etc/passwd", filepath.Join(dst, "passwd")); code != 0 {
			t.Fatalf("cp one file: %d %s", code, errOut)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "passwd")); !strings.HasPrefix(string(b), "root:x:0:0") {
			t.Fatalf("copied passwd: %q", b)
		}
	})

	t.Run("NoLeaksWhenEitherSideGoesAway", func(t *testing.T) {
		l.runPod("leaks", "Always", &apiv1.Container{Name: "app", Command: []string{"sh", "-c", "while true; do echo spam; usleep 10000; done"}})
		// Warm up: connections to API servers and the node exist.
		if _, _, code := l.ctl(ctx, "admin", nil, "exec", "leaks", "--", "true"); code != 0 {
			t.Fatal("warm-up exec failed")
		}
		base := goroutines()
		for i := 0; i < 10; i++ {
			// The client goes away in the middle of a follow and of an exec
			// that would run for an hour.
			_, _, stop := l.background("admin", "logs", "-f", "leaks")
			_, _, stopExec := l.background("admin", "exec", "-i", "leaks", "--", "sleep", "3600")
			time.Sleep(100 * time.Millisecond)
			_ = stop()
			_ = stopExec()
		}
		testutil.WaitFor(t, 10*time.Second, "the commands of the clients that went away killed", func() bool {
			out, _, _ := l.ctl(ctx, "admin", nil, "exec", "leaks", "--", "sh", "-c", countSleeps)
			return strings.TrimSpace(out) == "0"
		})
		// The other side goes away: the command is killed from another
		// exec; the first exec's call ends with its exit code.
		done := make(chan int, 1)
		var errOut syncBuffer
		go func() {
			done <- mainWith(l, "admin", strings.NewReader(""), io.Discard, &errOut, "exec", "leaks", "--", "sleep", "3600")
		}()
		var seen string
		if !testutil.Eventually(10*time.Second, func() bool {
			out, e, _ := l.ctl(ctx, "admin", nil, "exec", "leaks", "--", "sh", "-c", countSleeps)
			seen = out + e
			return strings.TrimSpace(out) == "1"
		}) {
			t.Fatalf("the long exec does not run: %q; its stderr %q", seen, errOut.String())
		}
		if _, e, code := l.ctl(ctx, "admin", nil, "exec", "leaks", "--", "sh", "-c", killSleeps); code != 0 {
			t.Fatalf("kill the sleep: %s", e)
		}
		select {
		case code := <-done:
			if code != 143 || !strings.Contains(errOut.String(), "command terminated with exit code 143") {
				t.Fatalf("exec of a command killed by SIGTERM: code %d, %q; want 143", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("exec did not end when its command was killed")
		}
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("goroutines back to about %d", base), func() bool {
			return goroutines() <= base+5
		})
	})
}

// countSleeps and killSleeps find the container's `sleep` processes
// through /proc (this busybox has no pgrep).
const (
	countSleeps = `n=0; for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && n=$((n+1)); done; echo $n`
	killSleeps  = `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && kill ${p#/proc/}; done; true`
)

func goroutines() int { return goruntime.NumGoroutine() }

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// mainWith runs ctl with explicit streams (a terminal as stdin).
func mainWith(l *lab, user string, in io.Reader, out, errOut io.Writer, args ...string) int {
	return cli.Main(append([]string{"--config", l.configs[user]}, args...), cli.Streams{In: in, Out: out, Err: errOut})
}

// dialNodeExec runs `true` in pod p through the node's stream port
// directly, with src's certificate.
func (l *lab) dialNodeExec(src pki.StaticCert, p *apiv1.Pod) error {
	cfg := l.bundle.NodeClientConfig(src, l.node, l.nodeIP)
	conn, err := grpc.NewClient(net.JoinHostPort(l.nodeIP.String(), strconv.Itoa(l.port)), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := streamv1.NewNodeStreamsClient(conn).Exec(ctx)
	if err != nil {
		return err
	}
	ref := &streamv1.PodRef{Namespace: "default", Name: p.GetMetadata().GetName(), Uid: p.GetMetadata().GetUid(), Container: "app"}
	if err := s.Send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: &streamv1.ExecStart{Pod: ref, Command: []string{"true"}}}}); err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if m.GetExit() != nil {
			return nil
		}
	}
}

// expectAudit finds an audit record of a relayed call that began.
func (l *lab) expectAudit(t *testing.T, sub, pod, container, command string) {
	t.Helper()
	l.auditMu.Lock()
	defer l.auditMu.Unlock()
	for _, a := range l.audits {
		if a.Subresource == sub && a.Pod == pod && a.Err == nil && a.Identity.User == "admin" && a.Node == l.node &&
			(container == "" || a.Container == container) && (command == "" || strings.Join(a.Command, " ") == command) {
			return
		}
	}
	t.Fatalf("no audit record of admin's %s of pod %s (container %q, command %q) in %+v", sub, pod, container, command, l.audits)
}

// expectAuditRefused finds the audit record of a refused call.
func (l *lab) expectAuditRefused(t *testing.T, user, sub, pod string) {
	t.Helper()
	l.auditMu.Lock()
	defer l.auditMu.Unlock()
	for _, a := range l.audits {
		if a.Subresource == sub && a.Pod == pod && a.Identity.User == user && a.Err != nil {
			return
		}
	}
	t.Fatalf("no audit record of %s's refused %s of pod %s", user, sub, pod)
}
