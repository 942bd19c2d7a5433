package image_test

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layer unpack creates device whiteouts and mounts overlayfs; CI runs as root")
	}
}

func layer(t *testing.T, fs []string) v1.Layer {
	t.Helper()
	l, err := runtimetest.TarLayer(func(tw *tar.Writer) error {
		for _, f := range fs {
			name, content, _ := strings.Cut(f, "=")
			h := &tar.Header{Name: name, Mode: 0o644, ModTime: time.Unix(1, 0)}
			if strings.HasSuffix(name, "/") {
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			} else {
				h.Typeflag, h.Size = tar.TypeReg, int64(len(content))
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write([]byte(content)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"/bin/true"}, Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (string, *atomic.Int64) {
	var hits atomic.Int64
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &hits
}

func newStore(t *testing.T, insecure ...string) *image.Store {
	s, err := image.New(image.Config{Root: t.TempDir(), InsecureRegistries: insecure})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Whiteouts and opaque dirs of an upper layer hide lower content in the
// overlay rootfs; progress reaches the total.
func TestPullWhiteoutsOverlayProgress(t *testing.T) {
	needRoot(t)
	host, _ := newRegistry(t, nil)
	ref := host + "/wh:1"
	push(t, ref, imageOf(t,
		layer(t, []string{"a/", "a/keep=k", "a/gone=g", "d/", "d/old=o"}),
		layer(t, []string{"a/.wh.gone=", "d/.wh..wh..opq=", "d/new=n"})))
	s := newStore(t, host)
	var last image.Progress
	img, err := s.Pull(context.Background(), ref, image.PullOptions{Progress: func(p image.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if last.Total == 0 || last.Done != last.Total {
		t.Errorf("progress ended at %+v", last)
	}
	if len(img.Layers) != 2 || img.Config.Cmd[0] != "/bin/true" || !strings.HasPrefix(img.ID, "sha256:") {
		t.Errorf("image record %+v", img)
	}
	root, err := s.MountRootfs("c1", img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.UnmountRootfs("c1")
	for p, want := range map[string]bool{"a/keep": true, "a/gone": false, "d/old": false, "d/new": true} {
		_, err := os.Stat(filepath.Join(root, p))
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
	// Writes go to the container's upper dir, not the shared layers.
	if err := os.WriteFile(filepath.Join(root, "a/keep"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	root2, err := s.MountRootfs("c2", img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.UnmountRootfs("c2")
	if b, _ := os.ReadFile(filepath.Join(root2, "a/keep")); string(b) != "k" {
		t.Errorf("second container sees %q", b)
	}
}

// Plain HTTP only for listed registries, even for loopback.
func TestInsecureOnlyWhenListed(t *testing.T) {
	host, _ := newRegistry(t, nil)
	s := newStore(t) // nothing listed
	_, err := s.Pull(context.Background(), host+"/x:1", image.PullOptions{})
	if !errors.Is(err, image.ErrInsecureRefused) {
		t.Fatalf("want ErrInsecureRefused, got %v", err)
	}
}

// Basic auth from a dockerconfigjson; without it the registry's refusal is
// reported as ErrUnauthorized.
func TestBasicAuthFromDockerConfig(t *testing.T) {
	needRoot(t)
	host, _ := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref := host + "/private:1"
	push(t, ref, imageOf(t, layer(t, []string{"f=x"})), remote.WithAuth(&authn.Basic{Username: "alice", Password: "pw"}))
	s := newStore(t, host)
	if _, err := s.Pull(context.Background(), ref, image.PullOptions{}); !errors.Is(err, image.ErrUnauthorized) || !strings.Contains(err.Error(), "who are you") {
		t.Fatalf("anonymous pull: %v", err)
	}
	cfg := fmt.Sprintf(`{"auths":{"http://%s/v1/":{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte("alice:pw")))
	kc, err := image.KeychainFromDockerConfigJSON([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), ref, image.PullOptions{Keychain: kc}); err != nil {
		t.Fatalf("authenticated pull: %v", err)
	}
	if _, err := image.KeychainFromDockerConfigJSON([]byte(`{"auths":{"x":{"auth":"!!"}}}`)); err == nil || !strings.Contains(err.Error(), `auths["x"].auth`) {
		t.Errorf("bad auth field not named: %v", err)
	}
}

// A multi-arch index resolves to linux/amd64.
func TestMultiArchIndex(t *testing.T) {
	needRoot(t)
	host, _ := newRegistry(t, nil)
	amd := imageOf(t, layer(t, []string{"arch=amd64"}))
	arm := imageOf(t, layer(t, []string{"arch=arm64"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	r, _ := name.ParseReference(host + "/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, host)
	img, err := s.Pull(context.Background(), host+"/multi:1", image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.MountRootfs("m", img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.UnmountRootfs("m")
	if b, _ := os.ReadFile(filepath.Join(root, "arch")); string(b) != "amd64" {
		t.Errorf("got %q", b)
	}
}

// IfNotPresent does not touch the registry once pulled; Never fails for a
// missing image; missing images and bad names map to sentinels; GC removes
// unused images and their layers; a reopened store remembers images.
func TestPolicyErrorsGC(t *testing.T) {
	needRoot(t)
	host, hits := newRegistry(t, nil)
	ref := host + "/p:1"
	push(t, ref, imageOf(t, layer(t, []string{"f=1"})))
	root := t.TempDir()
	s, err := image.New(image.Config{Root: root, InsecureRegistries: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img, err := s.Ensure(ctx, ref, image.PullIfNotPresent, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	if _, err := s.Ensure(ctx, ref, image.PullIfNotPresent, image.PullOptions{}); err != nil || hits.Load() != before {
		t.Errorf("IfNotPresent hit the registry (%d → %d), err %v", before, hits.Load(), err)
	}
	if _, err := s.Ensure(ctx, host+"/other:1", image.PullNever, image.PullOptions{}); !errors.Is(err, image.ErrNeverPull) {
		t.Errorf("Never: %v", err)
	}
	if _, err := s.Pull(ctx, host+"/p:nope", image.PullOptions{}); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("missing tag: %v", err)
	}
	if _, err := s.Pull(ctx, "Bad::Ref", image.PullOptions{}); !errors.Is(err, image.ErrInvalidReference) {
		t.Errorf("bad ref: %v", err)
	}
	if image.DefaultPullPolicy("x/y") != image.PullAlways || image.DefaultPullPolicy("x/y:1") != image.PullIfNotPresent {
		t.Error("default pull policy")
	}
	s2, err := image.New(image.Config{Root: root, InsecureRegistries: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.Lookup(ref); !ok || got.ID != img.ID {
		t.Fatal("reopened store lost the image")
	}
	removed, err := s2.GC(func(id string) bool { return false })
	if err != nil || len(removed) != 1 {
		t.Fatalf("gc: %v %v", removed, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "layers")); len(ents) != 0 {
		t.Errorf("%d layers left after GC", len(ents))
	}
}
