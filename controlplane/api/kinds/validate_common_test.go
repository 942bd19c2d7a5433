package kinds

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The hand-written checks accept exactly what their regular expressions
// (Kubernetes' own) accept.
func TestNameChecksMatchTheirRegexps(t *testing.T) {
	checks := []struct {
		name  string
		re    *regexp.Regexp
		check func(string) bool
	}{
		{"dns1123Label", regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`), isDNS1123Label},
		{"dns1123Subdomain", regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`), isDNS1123Subdomain},
		{"qualifiedName", regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`), isQualifiedName},
		{"labelValue", regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`), func(s string) bool { return s == "" || isQualifiedName(s) }},
	}
	fixed := []string{"", "a", "-", ".", "a-b", "a.b", "a..b", ".a", "a.", "-a", "a-", "A", "a_b", "web-1.svc", "x.y.z", "a-.b", "a.-b", "é", "a b"}
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "ab9Z-._ é."
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(6))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		fixed = append(fixed, string(b))
	}
	for _, c := range checks {
		for _, s := range fixed {
			if got, want := c.check(s), c.re.MatchString(s); got != want {
				t.Fatalf("%s(%q) = %v, regexp says %v", c.name, s, got, want)
			}
		}
	}
}

// Resource errors name each bad quantity, limits before requests, in the
// same order every time.
func TestResourceErrorsInStableOrder(t *testing.T) {
	r := &apiv1.ResourceRequirements{
		Limits:   map[string]string{"memory": "lots", "cpu": "-1"},
		Requests: map[string]string{"cpu": "2", "memory": "x"},
	}
	// The last: a request above its limit.
	want := []string{"c.limits[cpu]", "c.limits[memory]", "c.requests[memory]", "c.requests[cpu]"}
	for range 20 {
		errs := validateResources(r, "c")
		var got []string
		for _, e := range errs {
			got = append(got, e.Path)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("error paths %v, want %v", got, want)
		}
	}
}
