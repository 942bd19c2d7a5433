package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/proto/client"
)

// fakeRuntime reports a fixed set of images in use (a fake inside a unit
// test of the GC pass; the real runtime and image store are tested in their
// own packages).
type fakeRuntime struct{ inUse map[string]bool }

func (fakeRuntime) RunPod(context.Context, *runtime.Pod) error            { return nil }
func (fakeRuntime) StopPod(context.Context, string, *time.Duration) error { return nil }
func (fakeRuntime) RemovePod(context.Context, string) error               { return nil }
func (fakeRuntime) PodStatus(string) (runtime.PodStatus, error)           { return runtime.PodStatus{}, nil }
func (fakeRuntime) ListPods() []runtime.PodStatus                         { return nil }
func (f fakeRuntime) ImagesInUse() map[string]bool                        { return f.inUse }

type fakeImages struct{ stored []string }

func (f *fakeImages) GC(inUse func(string) bool) ([]string, error) {
	var removed, kept []string
	for _, id := range f.stored {
		if inUse(id) {
			kept = append(kept, id)
		} else {
			removed = append(removed, id)
		}
	}
	f.stored = kept
	return removed, nil
}

func TestImageGCRemovesOnlyUnusedAndWaitsForStarts(t *testing.T) {
	imgs := &fakeImages{stored: []string{"sha256:a", "sha256:b", "sha256:c"}}
	a := &Agent{cfg: Config{Runtime: fakeRuntime{inUse: map[string]bool{"sha256:b": true}}, Images: imgs}, busy: map[string]bool{}}
	// A pod start in flight: its image may not be counted yet, so no pass.
	a.busy["pod-1"] = true
	if removed, err := a.collectImages(); err != nil || len(removed) != 0 {
		t.Fatalf("pass during a pod start removed %v (err %v)", removed, err)
	}
	delete(a.busy, "pod-1")
	removed, err := a.collectImages()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(removed)
	if !reflect.DeepEqual(removed, []string{"sha256:a", "sha256:c"}) || !reflect.DeepEqual(imgs.stored, []string{"sha256:b"}) {
		t.Fatalf("removed %v, kept %v; want a and c removed, b kept", removed, imgs.stored)
	}
}

type plainRuntime struct{ fakeRuntime }

func (plainRuntime) ImagesInUse() {} // a different signature: not an imagesInUse

func TestImageGCNeedsRuntimeReportingImages(t *testing.T) {
	cfg := DefaultConfig()
	c, err := client.New(client.Options{Servers: []string{"127.0.0.1:1"}, TLS: &tls.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg.NodeName, cfg.Client, cfg.Runtime, cfg.Images = "n1", c, plainRuntime{}, &fakeImages{}
	err = cfg.validate()
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "image GC needs a Runtime") {
		t.Fatalf("validate: %v; want the image GC config error", err)
	}
	cfg.Runtime = fakeRuntime{}
	if err := cfg.validate(); err != nil {
		t.Fatalf("runtime reporting images: %v", err)
	}
}
