package hostlab

import "testing"

// ForTest makes a lab for t: it skips t (saying why) when the machine
// cannot hold one, and closes the lab when t ends, failing t if anything
// of the lab is left behind.
func ForTest(t testing.TB) *Lab {
	t.Helper()
	if err := Check(); err != nil {
		t.Skip(err)
	}
	l, err := New(Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}
