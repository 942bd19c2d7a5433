package netproxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

type fakeBackend struct{ closed bool }

func (*fakeBackend) name() string { return "fake" }
func (*fakeBackend) sync(context.Context, desiredState, map[string]bool, bool) (syncResult, error) {
	return syncResult{}, nil
}
func (*fakeBackend) cleanup() error { return nil }
func (f *fakeBackend) close() error { f.closed = true; return nil }

// A backend is added by registering it: "auto" takes the most preferred
// one whose probe passes, and a backend named in the config is used (or
// refused with its own error when its probe fails). Nothing here touches
// the kernel: the fake backend never programs anything.
func TestRegisteredBackendIsChosen(t *testing.T) {
	errNoFake := errors.New("no fake here")
	works := true
	registerBackend(backendType{name: "fake", preference: 0, unavailable: errNoFake,
		probe: func(netns.NsHandle) (string, bool) {
			if works {
				return "fake probe passed", true
			}
			return "fake probe failed", false
		},
		build: func(Config, netns.NsHandle, *slog.Logger) (backend, error) { return &fakeBackend{}, nil }})
	t.Cleanup(func() { delete(backendTypes, "fake") })

	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.BackendName() != "fake" || !strings.Contains(logs.String(), "auto; fake probe passed") {
		t.Fatalf("auto chose %s; log %q", p.BackendName(), logs.String())
	}

	works = false
	cfg.Backend = "fake"
	if _, err := New(cfg); !errors.Is(err, errNoFake) || !strings.Contains(err.Error(), "fake probe failed") {
		t.Fatalf("configured fake without it: %v", err)
	}
	cfg.Backend = "bpf"
	if _, err := New(cfg); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `backend="bpf": want one of auto, fake, ipvs, nftables`) {
		t.Fatalf("unknown backend: %v", err)
	}
}
