package streamtest

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// attachIn runs a long ctl command with in as its stdin until it returns
// (done gives its exit code) or stop cancels it.
func (l *lab) attachIn(user string, in io.Reader, args ...string) (out, errOut *syncBuffer, done <-chan int, stop func()) {
	out, errOut = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan int, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		err := cli.Run(ctx, append([]string{"--config", l.configs[user]}, args...), cli.Streams{In: in, Out: out, Err: errOut})
		var exit *cli.ExitError
		switch {
		case err == nil:
			ch <- 0
		case errors.As(err, &exit):
			ch <- exit.Code
		default:
			_, _ = errOut.Write([]byte("error: " + cli.Message(err) + "\n"))
			ch <- 1
		}
	}()
	var once sync.Once
	stop = func() { once.Do(cancel) }
	l.t.Cleanup(func() { stop(); <-finished })
	return out, errOut, ch, stop
}

func waitExit(t *testing.T, done <-chan int, what string) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not end", what)
		return -1
	}
}

// pty is a local terminal for ctl: ctl gets the slave as its stdin, the
// test types into and resizes the master.
func newPty(t *testing.T, w, h uint16) (console.Console, *os.File) {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	slave, err := os.OpenFile(slavePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	if err := master.Resize(console.WinSize{Width: w, Height: h}); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, master) }() // what ctl echoes locally in raw mode: nothing, but keep it drained
	return master, slave
}

// Attach to a container's stdin and terminal, and run -i -t --rm, end to
// end: real control nodes, agent and containers.
func TestAttachStdinAndRun(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()

	t.Run("AttachStdinEchoes", func(t *testing.T) {
		l.runPod("cat", "Always", &apiv1.Container{Name: "app", Command: []string{"cat"}, Stdin: true})
		for _, word := range []string{"hello", "again"} { // stdin (stdinOnce: false) stays open across attaches
			pr, pw := io.Pipe()
			out, errOut, done, _ := l.attachIn("admin", pr, "attach", "-i", "cat")
			testutil.WaitFor(t, 20*time.Second, "cat echoes "+word+" through attach -i", func() bool {
				_, _ = pw.Write([]byte(word + "\n")) // before the attach is up it goes nowhere: send until echoed
				return strings.Contains(out.String(), word+"\n")
			})
			pw.Close() // ctl's stdin ends: the attach detaches, the container runs on
			if code := waitExit(t, done, "attach -i after stdin ended"); code != 0 {
				t.Fatalf("attach -i: exit %d, stderr %q", code, errOut.String())
			}
		}
		l.expectAudit(t, "attach", "cat", "app", "")
		p, err := client.Get[*apiv1.Pod](ctx, l.admin, "default", "cat")
		if err != nil || p.GetStatus().GetContainerStatuses()[0].GetState().GetRunning() == nil || p.GetStatus().GetContainerStatuses()[0].GetRestartCount() != 0 {
			t.Fatalf("cat after two attaches: %v %v; want running, never restarted", err, p.GetStatus())
		}
	})

	t.Run("StdinOnce", func(t *testing.T) {
		l.runPod("once", "Never", &apiv1.Container{Name: "app", Command: []string{"sh", "-c", "cat; echo stdin-closed; exec sleep 3600"},
			Stdin: true, StdinOnce: true})
		pr, pw := io.Pipe()
		out, errOut, done, stop := l.attachIn("admin", pr, "attach", "-i", "once")
		testutil.WaitFor(t, 20*time.Second, "echo through the first attach", func() bool {
			_, _ = pw.Write([]byte("first\n"))
			return strings.Contains(out.String(), "first\n")
		})
		pw.Close() // the first attach's stdin ends: the container reads EOF
		testutil.WaitFor(t, 10*time.Second, "the container read EOF", func() bool {
			return strings.Contains(out.String(), "stdin-closed\n")
		})
		stop()
		waitExit(t, done, "first attach")
		_, errOut2, code := l.ctl(ctx, "admin", strings.NewReader("second\n"), "attach", "-i", "once")
		if code != 1 || !strings.Contains(errOut2, `stdin of container "app" is closed: its first attach ended (stdinOnce: true)`) {
			t.Fatalf("second attach -i of a stdinOnce container: code %d %q (first attach's stderr %q)", code, errOut2, errOut.String())
		}
	})

	t.Run("NoStdinInSpec", func(t *testing.T) {
		l.runPod("nostdin", "Always", sleeper("app"))
		_, errOut, code := l.ctl(ctx, "admin", strings.NewReader("x\n"), "attach", "-i", "nostdin")
		if code != 1 || !strings.Contains(errOut, `container "app" does not keep stdin open (its spec has no stdin: true)`) {
			t.Fatalf("attach -i without stdin: true: %d %q", code, errOut)
		}
	})

	t.Run("AttachTTYResize", func(t *testing.T) {
		l.runPod("term", "Always", &apiv1.Container{Name: "app", Command: []string{"sh"}, Stdin: true, Tty: true})
		master, slave := newPty(t, 91, 17)
		out, errOut, done, stop := l.attachIn("admin", slave, "attach", "-it", "term")
		testutil.WaitFor(t, 20*time.Second, "the attached shell sees a 17x91 terminal", func() bool {
			_, _ = master.Write([]byte("test -t 0 && stty size\r"))
			return strings.Contains(out.String(), "17 91\r\n")
		})
		// The local window changes: ctl sends the new size on SIGWINCH.
		if err := master.Resize(console.WinSize{Width: 120, Height: 40}); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGWINCH); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 20*time.Second, "the shell sees the new size 40x120", func() bool {
			_, _ = master.Write([]byte("stty size\r"))
			return strings.Contains(out.String(), "40 120\r\n")
		})
		stop()
		if code := waitExit(t, done, "attach -it"); code != 0 {
			t.Fatalf("interrupted attach -it: %d %q", code, errOut.String())
		}
		if !strings.Contains(errOut.String(), "If you don't see a command prompt, try pressing enter.") {
			t.Fatalf("attach -it stderr: %q", errOut.String())
		}
	})

	t.Run("RunInteractiveRmExitCode", func(t *testing.T) {
		// No scheduler runs in this lab: bind run's pod to the node as one would.
		go l.bindWhenCreated(t, "shell")
		master, slave := newPty(t, 80, 24)
		out, errOut, done, _ := l.attachIn("admin", slave, "run", "shell", "--image", l.image, "-i", "-t", "--rm", "--restart", "Never", "--command", "--", "sh")
		testutil.WaitFor(t, 60*time.Second, "run -it attached to the shell", func() bool {
			_, _ = master.Write([]byte("echo is-$((6*7))\r"))
			return strings.Contains(out.String(), "is-42\r\n")
		})
		p, err := client.Get[*apiv1.Pod](ctx, l.admin, "default", "shell")
		if err != nil {
			t.Fatal(err)
		}
		c := p.GetSpec().GetContainers()[0]
		if !c.GetStdin() || !c.GetStdinOnce() || !c.GetTty() {
			t.Fatalf("run -it made container %v; want stdin, stdinOnce and tty", c)
		}
		_, _ = master.Write([]byte("exit 3\r"))
		if code := waitExit(t, done, "run -it --rm"); code != 3 {
			t.Fatalf("run -it --rm of a shell that exits 3: ctl exited %d; stdout %q stderr %q", code, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), `pod "shell" deleted`) {
			t.Fatalf("run --rm did not say it deleted the pod: %q", out.String())
		}
		testutil.WaitFor(t, 30*time.Second, "the pod is gone", func() bool {
			_, err := client.Get[*apiv1.Pod](ctx, l.admin, "default", "shell")
			return client.IsNotFound(err)
		})
	})

	t.Run("RunPipedStdinOnce", func(t *testing.T) {
		// kubectl's `echo … | run -i --rm --restart=Never -- cat`: stdinOnce
		// closes the container's stdin when ctl's ends; cat exits 0.
		go l.bindWhenCreated(t, "piped")
		out, errOut, code := l.ctl(ctx, "admin", strings.NewReader("through-cat\n"), "run", "piped", "--image", l.image, "-i", "--rm", "--restart", "Never", "--command", "--", "sh", "-c", "cat; exit 4")
		if code != 4 || !strings.Contains(out, "through-cat\n") || !strings.Contains(out, `pod "piped" deleted`) {
			t.Fatalf("run -i --rm with piped stdin: code %d, stdout %q, stderr %q; want 4 and the echo", code, out, errOut)
		}
	})

	t.Run("ViewerAndNodeRefused", func(t *testing.T) {
		l.runPod("guarded-tty", "Always", &apiv1.Container{Name: "app", Command: []string{"sh"}, Stdin: true, Tty: true})
		for _, user := range []string{"user:viewer-bob", "node:" + l.node} {
			_, errOut, code := l.ctl(ctx, user, strings.NewReader("id\n"), "attach", "-i", "-t", "guarded-tty")
			if code != 1 || !(strings.Contains(errOut, "no RBAC rule allows it") || strings.Contains(errOut, "a node may not")) {
				t.Fatalf("%s attach -it: code %d, %q; want refused", user, code, errOut)
			}
			l.expectAuditRefused(t, user, "attach", "guarded-tty")
		}
		go l.bindWhenCreated(t, "viewer-run")
		_, errOut, code := l.ctl(ctx, "user:viewer-bob", strings.NewReader(""), "run", "viewer-run", "--image", l.image, "-i", "--restart", "Never", "--", "true")
		if code != 1 || !strings.Contains(errOut, "no RBAC rule allows it") {
			t.Fatalf("viewer run -i: code %d, %q; want refused", code, errOut)
		}
	})
}

// bindWhenCreated binds pod name, once it exists, to the lab's node (the
// scheduler's part, which this lab does not run).
func (l *lab) bindWhenCreated(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := client.Get[*apiv1.Pod](ctx, l.admin, "default", name)
		if err == nil {
			if p.GetSpec().GetNodeName() != "" {
				return
			}
			errs, err := client.Bind(ctx, l.admin, []*apiv1.Binding{{Namespace: "default", Name: name, Uid: p.GetMetadata().GetUid(), NodeName: l.node}})
			if err == nil && errs[0] == nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
