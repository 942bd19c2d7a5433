package testutil

import (
	"testing"
	"time"
)

// Poll is how often WaitFor re-checks its condition.
const Poll = 10 * time.Millisecond

// WaitFor polls cond until it returns true or timeout passes, then fails the
// test with what. Tests use it instead of sleeping and hoping.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %s waiting for: %s", timeout, what)
	}
}

// Eventually polls cond until it returns true (true) or timeout passes (false).
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Poll)
	}
}
