package hostlab

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// A process started after the lab began closing is not counted as the
// lab's: the start time read from /proc is in the same clock as uptime.
func TestStartTicksAgainstUptime(t *testing.T) {
	before := ticksSinceBoot()
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	after := ticksSinceBoot()
	st := startTicks("/proc/" + strconv.Itoa(cmd.Process.Pid))
	if before == 0 || st+1 < before || st > after+1 {
		t.Fatalf("child started at tick %d, outside [%d, %d]", st, before, after)
	}
	if self := startTicks("/proc/" + strconv.Itoa(os.Getpid())); self > before+1 { // the two clocks round apart by a tick
		t.Fatalf("this process started at tick %d, after %d", self, before)
	}
}
