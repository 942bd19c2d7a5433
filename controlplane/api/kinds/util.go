package kinds

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func ptr[T any](v T) *T { return &v }

// HumanDuration renders a duration like kubectl's AGE column: 45s, 3m20s, 95m, 5h10m, 30h, 6d2h, 200d, 3y40d.
func HumanDuration(d time.Duration) string {
	if d < 0 {
		return "<invalid>"
	}
	s := int(d.Round(time.Second) / time.Second)
	switch {
	case s < 120:
		return fmt.Sprintf("%ds", s)
	case s < 10*60:
		if s%60 == 0 {
			return fmt.Sprintf("%dm", s/60)
		}
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 3*3600:
		return fmt.Sprintf("%dm", s/60)
	case s < 8*3600:
		if m := (s / 60) % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", s/3600, m)
		}
		return fmt.Sprintf("%dh", s/3600)
	case s < 48*3600:
		return fmt.Sprintf("%dh", s/3600)
	case s < 8*86400:
		if h := (s / 3600) % 24; h != 0 {
			return fmt.Sprintf("%dd%dh", s/86400, h)
		}
		return fmt.Sprintf("%dd", s/86400)
	case s < 2*365*86400:
		return fmt.Sprintf("%dd", s/86400)
	case s < 8*365*86400:
		if dd := (s / 86400) % 365; dd != 0 {
			return fmt.Sprintf("%dy%dd", s/(365*86400), dd)
		}
		return fmt.Sprintf("%dy", s/(365*86400))
	}
	return fmt.Sprintf("%dy", s/(365*86400))
}

// age renders an RFC 3339 timestamp relative to now; "<unknown>" if unset.
func age(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func joinOrNone(ss []string) string { return orNone(strings.Join(ss, ",")) }

func labelsString(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return joinOrNone(parts)
}
