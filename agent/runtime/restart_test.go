package runtime

import (
	"testing"
	"time"
)

// The restart decision for every policy and outcome, as a table: no root,
// no container.
func TestDecideAfterExit(t *testing.T) {
	b := backoffPolicy{Base: 10 * time.Second, Max: 5 * time.Minute, Reset: 10 * time.Minute}
	const short = time.Second
	cases := []struct {
		name string
		in   exited
		want afterExit
	}{
		{"Always restarts a clean exit", exited{Policy: RestartAlways, ExitCode: 0, Ran: short}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"empty policy is Always", exited{ExitCode: 0, Ran: short}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"Always restarts a failure", exited{Policy: RestartAlways, ExitCode: 1, Ran: short}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"OnFailure restarts a failure", exited{Policy: RestartOnFailure, ExitCode: 2, Ran: short}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"OnFailure keeps a success", exited{Policy: RestartOnFailure, ExitCode: 0, Ran: short}, afterExit{Succeeded: true}},
		{"Never keeps a failure", exited{Policy: RestartNever, ExitCode: 137, Ran: short}, afterExit{}},
		{"Never keeps a success", exited{Policy: RestartNever, ExitCode: 0, Ran: short}, afterExit{Succeeded: true}},
		{"back-off doubles", exited{Policy: RestartAlways, ExitCode: 1, Ran: short, Restarts: 2}, afterExit{Restart: true, Restarts: 3, Delay: 40 * time.Second}},
		{"back-off is capped", exited{Policy: RestartAlways, ExitCode: 1, Ran: short, Restarts: 9}, afterExit{Restart: true, Restarts: 10, Delay: 5 * time.Minute}},
		{"a long run resets the back-off", exited{Policy: RestartAlways, ExitCode: 1, Ran: 10 * time.Minute, Restarts: 9}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"just short of the reset keeps counting", exited{Policy: RestartAlways, ExitCode: 1, Ran: 10*time.Minute - time.Second, Restarts: 1}, afterExit{Restart: true, Restarts: 2, Delay: 20 * time.Second}},
		{"stopping never restarts", exited{Policy: RestartAlways, ExitCode: 143, Ran: short, Stopping: true, Restarts: 3}, afterExit{Restarts: 3}},
		{"stopping after exit 0 is no success", exited{Policy: RestartAlways, ExitCode: 0, Ran: short, Stopping: true}, afterExit{}},
		{"init failure restarts under Always", exited{Init: true, Policy: RestartAlways, ExitCode: 1, Ran: short}, afterExit{Restart: true, Restarts: 1, Delay: 10 * time.Second}},
		{"init failure restarts under OnFailure", exited{Init: true, Policy: RestartOnFailure, ExitCode: 1, Ran: short, Restarts: 1}, afterExit{Restart: true, Restarts: 2, Delay: 20 * time.Second}},
		{"init failure under Never fails the pod", exited{Init: true, Policy: RestartNever, ExitCode: 1, Ran: short}, afterExit{InitFailed: true}},
		{"init success under Always lets the next start", exited{Init: true, Policy: RestartAlways, ExitCode: 0, Ran: short}, afterExit{Succeeded: true}},
		{"init stopped is no failure", exited{Init: true, Policy: RestartNever, ExitCode: 143, Ran: short, Stopping: true}, afterExit{}},
	}
	for _, c := range cases {
		if got := decideAfterExit(b, c.in); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := backoffPolicy{Base: 200 * time.Millisecond, Max: 2 * time.Second}
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond,
		4: 1600 * time.Millisecond, 5: 2 * time.Second, 50: 2 * time.Second} {
		if got := b.delay(n); got != want {
			t.Errorf("delay(%d) = %v, want %v", n, got, want)
		}
	}
}
