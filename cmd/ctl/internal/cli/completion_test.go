package cli_test

import (
	"strings"
	"testing"
)

// Shell completion of the new verbs offers kinds, and object names asked
// of the API (KIND NAME and KIND/NAME), nodes for cordon/drain, and the
// config file's contexts.
func TestCompletionOfNewVerbs(t *testing.T) {
	e := newCPEnv(t, 1)
	e.mustCtl(twoConfigMaps, "apply", "-f", "-")
	complete := func(args ...string) []string {
		t.Helper()
		out := e.mustCtl("", append([]string{"__complete"}, args...)...)
		var words []string
		for _, line := range strings.Split(out, "\n") {
			if line != "" && !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "Completion ended") {
				words = append(words, strings.SplitN(line, "\t", 2)[0])
			}
		}
		return words
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cordon", ""}, "hollow-0"},
		{[]string{"drain", "hol"}, "hollow-0"},
		{[]string{"uncordon", ""}, "hollow-0"},
		{[]string{"label", "configmaps", "o"}, "one"},
		{[]string{"annotate", "cm/t"}, "cm/two"},
		{[]string{"patch", "poddisrupt"}, "poddisruptionbudgets"},
		{[]string{"edit", "configmap", "t"}, "two"},
		{[]string{"wait", "configmap/"}, "configmap/one"},
		{[]string{"expose", "deploy"}, "deployments"},
		{[]string{"explain", "dae"}, "daemonsets"},
		{[]string{"events", "--for", "cm/o"}, "cm/one"},
		{[]string{"config", "use-context", ""}, "default"},
		{[]string{"patch", "cm", "one", "--type", ""}, "json"},
	} {
		got := complete(tc.args...)
		found := false
		for _, w := range got {
			found = found || w == tc.want
		}
		if !found {
			t.Errorf("complete %q: %v, want %q among them", tc.args, got, tc.want)
		}
	}
}
