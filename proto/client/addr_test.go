package client

import "testing"

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":             "10.0.0.1:7443",
		"10.0.0.1:8443":        "10.0.0.1:8443",
		"cp1.example.com":      "cp1.example.com:7443",
		"cp1.example.com:99":   "cp1.example.com:99",
		"fd00::1":              "[fd00::1]:7443",
		"[fd00::1]":            "[fd00::1]:7443",
		"[fd00::1]:7000":       "[fd00::1]:7000",
		" 10.0.0.2 ":           "10.0.0.2:7443",
		"dns:///cp.example":    "dns:///cp.example",
		"unix:/run/skiff.sock": "unix:/run/skiff.sock",
		"":                     "",
	} {
		if got := WithDefaultPort(in); got != want {
			t.Errorf("WithDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}
