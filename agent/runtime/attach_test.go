package runtime_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/integration/testutil"
)

// lockedBuf is a buffer safe for the attach writing and the test reading.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.WriteString(string(p))
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// echoThroughAttach attaches with stdin to a container that echoes it and
// checks the word comes back, then detaches (ends stdin).
func echoThroughAttach(t *testing.T, e *runtimetest.Env, uid, ctr, word string) {
	t.Helper()
	pr, pw := io.Pipe()
	var out lockedBuf
	done := make(chan error, 1)
	go func() {
		_, err := e.Runtime.Attach(context.Background(), uid, ctr, runtime.AttachOptions{Stdin: pr, Stdout: &out, Stderr: &out})
		done <- err
	}()
	testutil.WaitFor(t, 20*time.Second, ctr+" echoes "+word, func() bool {
		go func() { _, _ = pw.Write([]byte(word + "\n")) }() // blocks until the attach reads
		return strings.Contains(out.String(), word)
	})
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("attach %s: %v", ctr, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("attach %s did not end with its stdin", ctr)
	}
}

// Across a runtime restart (the agent's): stdin: true survives (the
// container holds its FIFO); a stdinOnce stdin and a terminal do not (the
// agent held them), and attach says so.
func TestAttachAcrossRuntimeRestart(t *testing.T) {
	t.Parallel()
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	run(t, e, &runtime.Pod{UID: "att", Name: "att", TerminationGracePeriodSeconds: i64(0),
		Containers: []runtime.Container{
			{Name: "plain", Image: img, Command: []string{"cat"}, Stdin: true},
			{Name: "once", Image: img, Command: []string{"sh", "-c", "cat; echo got-eof; exec sleep 3600"}, Stdin: true, StdinOnce: true},
			{Name: "term", Image: img, Command: []string{"sh", "-c", "trap '' HUP; while true; do sleep 1; done"}, Stdin: true, TTY: true},
		}})
	for _, c := range []string{"plain", "once", "term"} {
		testutil.WaitFor(t, 20*time.Second, c+" running", func() bool { return running(t, e, "att", c) })
	}
	echoThroughAttach(t, e, "att", "plain", "before-restart")
	e.Reopen(t)
	echoThroughAttach(t, e, "att", "plain", "after-restart")
	if cs := ctrStatus(t, e, "att", "plain"); cs.RestartCount != 0 {
		t.Fatalf("plain restarted: %+v", cs)
	}
	for ctr, want := range map[string]string{
		"once": `stdin of container "once" is closed: this node's agent restarted since the container started`,
		"term": `container "term" lost its terminal when this node's agent restarted`,
	} {
		_, err := e.Runtime.Attach(context.Background(), "att", ctr, runtime.AttachOptions{Stdin: strings.NewReader("x\n"), Stdout: io.Discard})
		if !errors.Is(err, runtime.ErrNoStdin) || !strings.Contains(err.Error(), want) {
			t.Errorf("attach -i %s after the restart: %v; want %q", ctr, err, want)
		}
	}
	// The stdinOnce container read EOF when the runtime that held its
	// stdin went away.
	testutil.WaitFor(t, 10*time.Second, "once read EOF", func() bool {
		return strings.Contains(logsOf(t, e, "att", "once"), "got-eof")
	})
}
