package volume

import (
	"fmt"
	"maps"
	"os"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// TokenResolver is what a projected volume's serviceAccountToken and
// downwardAPI sources need beyond a Resolver: the pod's token (minted by
// the API for this pod, its node asking), the cluster CA and the pod's
// own names. The agent's resolver implements it; a Resolver without it
// refuses those sources.
type TokenResolver interface {
	// ServiceAccountToken is a token of the pod's service account for
	// audience ("" the API's), valid for expirationSeconds (0: default).
	ServiceAccountToken(audience string, expirationSeconds int64) ([]byte, error)
	// PodField is a downward API field of the pod (metadata.namespace,
	// metadata.name, metadata.uid, spec.serviceAccountName).
	PodField(path string) (string, bool)
}

// Projected is a projected volume: files from ConfigMaps, Secrets, the
// pod's service account token and downward API fields in one directory,
// on a tmpfs (a token or secret never touches the node's disk).
// /var/run/secrets/kubernetes.io/serviceaccount is one: token, ca.crt
// (a ConfigMap kube-root-ca.crt) and namespace (downward API).
type Projected struct {
	Files       map[string][]byte `json:"files"`
	DefaultMode *int32            `json:"defaultMode,omitempty"`
}

func init() {
	Register(Type{Name: "projected", New: func() Source { return &Projected{} }, FromAPI: projectedFromAPI})
}

func projectedFromAPI(field string, v *apiv1.Volume, r Resolver) (Source, error) {
	src := v.GetProjected()
	if src == nil {
		return nil, nil
	}
	field += ".projected"
	files := map[string][]byte{}
	add := func(f string, more map[string][]byte) error {
		for name, data := range more {
			if _, dup := files[name]; dup {
				return fmt.Errorf("%s: file %q projected twice", f, name)
			}
			files[name] = data
		}
		return nil
	}
	tr, _ := r.(TokenResolver)
	for i, s := range src.GetSources() {
		f := fmt.Sprintf("%s.sources[%d]", field, i)
		var more map[string][]byte
		var err error
		switch {
		case s.GetConfigMap() != nil:
			cm := s.GetConfigMap()
			more, err = projectFiles(f+".configMap", cm.GetItems(), cm.GetOptional(), r, func() (map[string][]byte, error) { return r.ConfigMap(cm.GetName()) })
		case s.GetSecret() != nil:
			sec := s.GetSecret()
			more, err = projectFiles(f+".secret", sec.GetItems(), sec.GetOptional(), r, func() (map[string][]byte, error) { return r.Secret(sec.GetName()) })
		case s.GetServiceAccountToken() != nil:
			more, err = tokenFile(f+".serviceAccountToken", s.GetServiceAccountToken(), tr)
		case s.GetDownwardAPI() != nil:
			more, err = downwardFiles(f+".downwardAPI", s.GetDownwardAPI(), tr)
		default:
			err = fmt.Errorf("%s: no source: one of configMap, secret, serviceAccountToken, downwardAPI is required", f)
		}
		if err != nil {
			return nil, err
		}
		if err := add(f, more); err != nil {
			return nil, err
		}
	}
	return &Projected{Files: files, DefaultMode: src.DefaultMode}, nil
}

func tokenFile(field string, s *apiv1.ServiceAccountTokenProjection, tr TokenResolver) (map[string][]byte, error) {
	if tr == nil {
		return nil, fmt.Errorf("%s: this node cannot get service account tokens", field)
	}
	if s.GetPath() == "" || strings.Contains(s.GetPath(), "/") {
		return nil, fmt.Errorf("%s.path %q: want a file name", field, s.GetPath())
	}
	tok, err := tr.ServiceAccountToken(s.GetAudience(), s.GetExpirationSeconds())
	if err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	return map[string][]byte{s.GetPath(): tok}, nil
}

func downwardFiles(field string, s *apiv1.DownwardAPIVolumeSource, tr TokenResolver) (map[string][]byte, error) {
	out := map[string][]byte{}
	for j, it := range s.GetItems() {
		f := fmt.Sprintf("%s.items[%d]", field, j)
		if it.GetPath() == "" || strings.Contains(it.GetPath(), "/") {
			return nil, fmt.Errorf("%s.path %q: want a file name", f, it.GetPath())
		}
		if it.GetFieldRef() == nil {
			return nil, fmt.Errorf("%s: only fieldRef items are supported", f)
		}
		if tr == nil {
			return nil, fmt.Errorf("%s: this node cannot resolve downward API fields", f)
		}
		v, ok := tr.PodField(it.GetFieldRef().GetFieldPath())
		if !ok {
			return nil, fmt.Errorf("%s.fieldRef.fieldPath %q: supported are metadata.namespace, metadata.name, metadata.uid, spec.serviceAccountName", f, it.GetFieldRef().GetFieldPath())
		}
		out[it.GetPath()] = []byte(v)
	}
	return out, nil
}

// VolumeType implements Source.
func (*Projected) VolumeType() string { return "projected" }

// Validate implements Source.
func (p *Projected) Validate(field string) error { return checkFileNames(field, p.Files) }

// Prepare implements Source: a tmpfs with the files.
func (p *Projected) Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := mountTmpfsOnce(dir, "mode=0755,size=4m"); err != nil {
		return err
	}
	return writeFiles(dir, maps.Clone(p.Files), modeOr(p.DefaultMode, 0o644))
}

// Mount implements Source: always read-only.
func (*Projected) Mount(dir string) (string, bool) { return dir, true }

// TearDown implements Source.
func (*Projected) TearDown(dir string) error { return unmountIfMounted(dir) }

// Update implements Updatable: the tmpfs is there; the files switch at
// once (..data), which is how a refreshed token replaces the old one.
func (p *Projected) Update(dir string) error { return p.Prepare(dir) }
