package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Sentinel errors; the registry's own message is wrapped with them.
var (
	// ErrInvalidReference: the image name does not parse (Kubernetes: InvalidImageName).
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNotFound: the registry has no such repository, tag or digest.
	ErrNotFound = errors.New("image not found")
	// ErrUnauthorized: the registry refused our credentials (or wants some).
	ErrUnauthorized = errors.New("registry refused authorization")
	// ErrNeverPull: policy Never and the image is not on the node (ErrImageNeverPull).
	ErrNeverPull = errors.New("image not present and pull policy is Never")
	// ErrInsecureRefused: plain HTTP to a registry that is not listed as insecure.
	ErrInsecureRefused = errors.New("plain HTTP refused: registry is not listed as insecure")
	// ErrUnknownImage: no stored image with that ID.
	ErrUnknownImage = errors.New("unknown image")
)

// PullPolicy is Kubernetes' imagePullPolicy.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// DefaultPullPolicy is Kubernetes' default: Always for ":latest" or no tag,
// IfNotPresent otherwise (including digests).
func DefaultPullPolicy(ref string) PullPolicy {
	r, err := name.ParseReference(ref)
	if err != nil {
		return PullIfNotPresent
	}
	if t, ok := r.(name.Tag); ok && t.TagStr() == "latest" {
		return PullAlways
	}
	return PullIfNotPresent
}

// Config of a Store.
type Config struct {
	// Root holds layers, image records and container rootfs dirs.
	Root string
	// InsecureRegistries ("host:port") may be reached over plain HTTP. Every
	// other registry is HTTPS only.
	InsecureRegistries []string
	// Platform picked from multi-arch indexes.
	Platform v1.Platform
	// Transport is the base HTTP transport (nil: remote.DefaultTransport).
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Registerer, when set, takes the pull metrics (metrics.go).
	Registerer prometheus.Registerer
}

// DefaultConfig is the node layout.
func DefaultConfig() Config {
	return Config{Root: "/var/lib/skiff/images", Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}
}

// RuntimeConfig is the part of an image config a container needs.
type RuntimeConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Image is a stored image.
type Image struct {
	// ID is the config digest ("sha256:…"), as Kubernetes' imageID.
	ID string `json:"id"`
	// Refs are the references it was pulled as.
	Refs []string `json:"refs"`
	// RepoDigest is "repo@sha256:<manifest digest>".
	RepoDigest string `json:"repoDigest"`
	// Layers are diffIDs, bottom first.
	Layers []string      `json:"layers"`
	Config RuntimeConfig `json:"config"`
	// Size is the compressed size of all layers.
	Size int64 `json:"size"`
}

// Progress of a pull, in compressed bytes.
type Progress struct {
	Ref         string
	Done, Total int64
}

// PullOptions for one pull.
type PullOptions struct {
	// Keychain gives credentials (nil: anonymous).
	Keychain authn.Keychain
	// Progress, if set, is called as bytes arrive (from the pulling goroutine).
	Progress func(Progress)
}

// Store is the node's image and layer store. Safe for concurrent use.
type Store struct {
	cfg      Config
	log      *slog.Logger
	insecure map[string]bool
	pulls    singleflight.Group
	metrics  *pullMetrics

	mu       sync.Mutex
	images   map[string]*Image // by ID
	inflight map[string]int    // layer diffIDs being pulled (GC keeps them)
}

// New opens (or creates) a store at cfg.Root.
func New(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("image: Config.Root is empty")
	}
	if cfg.Platform.OS == "" {
		cfg.Platform = DefaultConfig().Platform
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Logger, insecure: map[string]bool{}, images: map[string]*Image{}, inflight: map[string]int{},
		metrics: newPullMetrics(cfg.Registerer)}
	for _, r := range cfg.InsecureRegistries {
		s.insecure[r] = true
	}
	for _, d := range []string{s.layersDir(), s.imagesDir(), s.containersDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
	}
	// Half-unpacked layers of a crashed pull.
	_ = os.RemoveAll(s.tmpDir())
	_ = os.MkdirAll(s.tmpDir(), 0o700)
	ents, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.imagesDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		var img Image
		if err := json.Unmarshal(b, &img); err != nil {
			s.log.Warn("dropping corrupt image record", "file", e.Name(), "err", err)
			_ = os.Remove(filepath.Join(s.imagesDir(), e.Name()))
			continue
		}
		s.images[img.ID] = &img
	}
	return s, nil
}

func (s *Store) layersDir() string     { return filepath.Join(s.cfg.Root, "layers") }
func (s *Store) imagesDir() string     { return filepath.Join(s.cfg.Root, "images") }
func (s *Store) containersDir() string { return filepath.Join(s.cfg.Root, "containers") }
func (s *Store) tmpDir() string        { return filepath.Join(s.cfg.Root, "tmp") }

func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.layersDir(), strings.TrimPrefix(diffID, "sha256:"))
}

// Lookup finds a stored image by reference or ID.
func (s *Store) Lookup(ref string) (*Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img, ok := s.images[ref]; ok {
		return img, true
	}
	for _, img := range s.images {
		if slices.Contains(img.Refs, ref) || img.RepoDigest == ref {
			return img, true
		}
	}
	return nil, false
}

// List returns all stored images.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, *img)
	}
	return out
}

// Ensure returns the image for ref, pulling it as policy says.
func (s *Store) Ensure(ctx context.Context, ref string, policy PullPolicy, opts PullOptions) (*Image, error) {
	if policy == "" {
		policy = DefaultPullPolicy(ref)
	}
	if policy != PullAlways {
		if img, ok := s.Lookup(ref); ok {
			return img, nil
		}
		if policy == PullNever {
			return nil, fmt.Errorf("%s: %w", ref, ErrNeverPull)
		}
	}
	return s.Pull(ctx, ref, opts)
}

// Pull fetches ref from its registry and stores it. Concurrent pulls of the
// same reference share one download.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	v, err, _ := s.pulls.Do(ref, func() (any, error) {
		start := time.Now()
		img, err := s.pull(ctx, ref, opts)
		s.metrics.observe(start, err)
		return img, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*Image), nil
}

// insecureGuard refuses plain-HTTP requests to registries not listed as
// insecure. go-containerregistry itself falls back to HTTP for loopback and
// private addresses; the node's policy is stricter.
type insecureGuard struct {
	next     http.RoundTripper
	insecure map[string]bool
}

func (g insecureGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.insecure[r.URL.Host] {
		return nil, fmt.Errorf("%s: %w", r.URL.Host, ErrInsecureRefused)
	}
	return g.next.RoundTrip(r)
}

func (s *Store) remoteOptions(ctx context.Context, opts PullOptions) []remote.Option {
	base := s.cfg.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.NewMultiKeychain() // anonymous
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(s.cfg.Platform),
		remote.WithTransport(insecureGuard{next: base, insecure: s.insecure}),
		remote.WithAuthFromKeychain(kc),
	}
}

// classify wraps a registry error with the matching sentinel.
func classify(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("pull %s: %w: %v", ref, ErrNotFound, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("pull %s: %w: %v", ref, ErrUnauthorized, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("pull %s: %w: %v", ref, ErrNotFound, err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("pull %s: %w: %v", ref, ErrUnauthorized, err)
			}
		}
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

func (s *Store) pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	var nameOpts []name.Option
	if r, err := name.ParseReference(ref); err == nil && s.insecure[r.Context().RegistryStr()] {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("%q: %w: %v", ref, ErrInvalidReference, err)
	}
	rimg, err := remote.Image(r, s.remoteOptions(ctx, opts)...)
	if err != nil {
		return nil, classify(ref, err)
	}
	cfgName, err := rimg.ConfigName()
	if err != nil {
		return nil, classify(ref, err)
	}
	mdigest, err := rimg.Digest()
	if err != nil {
		return nil, classify(ref, err)
	}
	cf, err := rimg.ConfigFile()
	if err != nil {
		return nil, classify(ref, err)
	}
	layers, err := rimg.Layers()
	if err != nil {
		return nil, classify(ref, err)
	}
	img := &Image{
		ID:         cfgName.String(),
		Refs:       []string{ref},
		RepoDigest: r.Context().Name() + "@" + mdigest.String(),
		Config: RuntimeConfig{
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env,
			WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
		},
	}
	// Sizes first, for progress totals; diffIDs from the config.
	var total int64
	for _, l := range layers {
		sz, err := l.Size()
		if err != nil {
			return nil, classify(ref, err)
		}
		total += sz
		d, err := l.DiffID()
		if err != nil {
			return nil, classify(ref, err)
		}
		img.Layers = append(img.Layers, d.String())
	}
	img.Size = total
	s.holdLayers(img.Layers, 1)
	defer s.holdLayers(img.Layers, -1)

	prog := &progressCounter{ref: ref, total: total, fn: opts.Progress}
	for i, l := range layers {
		if _, err := os.Stat(s.layerPath(img.Layers[i])); err == nil {
			sz, _ := l.Size()
			prog.add(sz)
			continue
		}
		if err := s.fetchLayer(ctx, l, img.Layers[i], prog); err != nil {
			return nil, classify(ref, err)
		}
	}
	return s.record(img)
}

func (s *Store) holdLayers(ids []string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.inflight[id] += delta
		if s.inflight[id] <= 0 {
			delete(s.inflight, id)
		}
	}
}

// record stores the image, merging refs with an existing record of the same ID.
func (s *Store) record(img *Image) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A tag moves: drop it from other images.
	for _, other := range s.images {
		if other.ID != img.ID && slices.Contains(other.Refs, img.Refs[0]) {
			other.Refs = slices.DeleteFunc(other.Refs, func(r string) bool { return r == img.Refs[0] })
			_ = s.writeRecord(other)
		}
	}
	if old, ok := s.images[img.ID]; ok {
		for _, r := range old.Refs {
			if !slices.Contains(img.Refs, r) {
				img.Refs = append(img.Refs, r)
			}
		}
	}
	if err := s.writeRecord(img); err != nil {
		return nil, err
	}
	s.images[img.ID] = img
	return img, nil
}

func (s *Store) writeRecord(img *Image) error {
	b, err := json.Marshal(img)
	if err != nil {
		return err
	}
	p := filepath.Join(s.imagesDir(), strings.TrimPrefix(img.ID, "sha256:")+".json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("image: write record: %w", err)
	}
	return os.Rename(tmp, p)
}

// fetchLayer downloads, verifies and unpacks one layer into the store.
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, diffID string, prog *progressCounter) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	// Count compressed bytes as they come off the wire, then decompress and
	// verify the diffID ourselves while unpacking.
	counted := &countingReader{r: rc, fn: prog.add}
	ur, err := decompress(counted)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer ur.Close()
	h := sha256.New()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := unpack(ctx, io.TeeReader(ur, h), tmp); err != nil {
		return fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	// Drain trailing padding so the digest covers the whole stream.
	if _, err := io.Copy(h, ur); err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("layer %s: content has digest %s", diffID, got)
	}
	if err := os.Rename(tmp, s.layerPath(diffID)); err != nil {
		if _, statErr := os.Stat(s.layerPath(diffID)); statErr == nil {
			return nil // a concurrent pull of another image won
		}
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	return nil
}

type progressCounter struct {
	mu    sync.Mutex
	ref   string
	done  int64
	total int64
	fn    func(Progress)
}

func (p *progressCounter) add(n int64) {
	p.mu.Lock()
	p.done += n
	done := p.done
	p.mu.Unlock()
	if p.fn != nil {
		p.fn(Progress{Ref: p.ref, Done: done, Total: p.total})
	}
}

type countingReader struct {
	r  io.Reader
	fn func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}

// GC removes images for which inUse returns false, then every layer no
// remaining image uses (and no pull is fetching). It returns removed IDs.
func (s *Store) GC(inUse func(imageID string) bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []string
	for id, img := range s.images {
		if inUse(id) {
			continue
		}
		if err := os.Remove(filepath.Join(s.imagesDir(), strings.TrimPrefix(img.ID, "sha256:")+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("image: gc %s: %w", id, err)
		}
		delete(s.images, id)
		removed = append(removed, id)
	}
	keep := map[string]bool{}
	for _, img := range s.images {
		for _, l := range img.Layers {
			keep[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	for l := range s.inflight {
		keep[strings.TrimPrefix(l, "sha256:")] = true
	}
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return removed, fmt.Errorf("image: gc: %w", err)
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.layersDir(), e.Name())); err != nil {
			return removed, fmt.Errorf("image: gc layer %s: %w", e.Name(), err)
		}
	}
	return removed, nil
}
