package dashboard

import (
	"bytes"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// A page is a set of fragments rendered from the objects of the kinds it
// watches. Adding a page is one file with one definePage: its kinds, its
// skeleton template (containers with ids) and its fragments.
type page struct {
	// Name is the page's path ("/<name>"; "cluster" is "/") and the
	// skeleton template's name ("page-<name>").
	Name, Title string
	// Nav puts the page in the top navigation, ordered by NavOrder.
	Nav      bool
	NavOrder int
	// Kinds are listed and watched as the caller while the page is open.
	Kinds []string
	// Namespaced watches Kinds in the page's "ns" parameter only.
	Namespaced bool
	// Cluster pages read the ClusterSource (polled while open: the store's
	// membership has no watch); Usage pages the UsageSource.
	Cluster, Usage bool
	Frags          func(v *view) []frag
}

// frag is one fragment before rendering: an element with id ID inside the
// container Parent, drawn by template Template from Data.
type frag struct {
	ID, Parent, Template string
	Data                 any
}

// fragment is a rendered frag as the browser receives it.
type fragment struct {
	ID     string `json:"id"`
	Parent string `json:"parent,omitempty"`
	HTML   string `json:"html,omitempty"`
	Del    bool   `json:"del,omitempty"`
}

var (
	pages    = map[string]*page{}
	navOrder []*page
)

func definePage(p *page) {
	if _, dup := pages[p.Name]; dup {
		panic("dashboard: page " + p.Name + " defined twice")
	}
	pages[p.Name] = p
	if p.Nav {
		navOrder = append(navOrder, p)
		slices.SortStableFunc(navOrder, func(a, b *page) int { return a.NavOrder - b.NavOrder })
	}
}

// view is what a page renders from.
type view struct {
	params url.Values
	objs   map[string]map[string]client.Object // kind → namespace/name → object
	usage  map[string]Usage
	// measured: usage came from a UsageSource, not from requests.
	measured   bool
	members    []*storepb.Member
	revision   int64
	clusterErr string
}

func newView(params url.Values) *view {
	return &view{params: params, objs: map[string]map[string]client.Object{}}
}

// list returns the objects of kind sorted by namespace/name.
func (v *view) list(kind string) []client.Object {
	m := v.objs[kind]
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]client.Object, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// listOf is list with the objects typed.
func listOf[T client.Object](v *view, kind string) []T {
	var out []T
	for _, o := range v.list(kind) {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func (v *view) put(kind string, o client.Object) {
	m := v.objs[kind]
	if m == nil {
		m = map[string]client.Object{}
		v.objs[kind] = m
	}
	m[client.Key(o)] = o
}

func (v *view) remove(kind string, o client.Object) { delete(v.objs[kind], client.Key(o)) }

// renderer holds the parsed templates.
type renderer struct{ t *template.Template }

func newRenderer() (*renderer, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"join": strings.Join,
	}).ParseFS(assets, "assets/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	return &renderer{t: t}, nil
}

func (r *renderer) exec(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := r.t.ExecuteTemplate(&b, name, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return b.String(), nil
}

// render draws every fragment of p from v.
func (r *renderer) render(p *page, v *view) ([]fragment, error) {
	fs := p.Frags(v)
	out := make([]fragment, 0, len(fs))
	for _, f := range fs {
		html, err := r.exec(f.Template, f.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, fragment{ID: f.ID, Parent: f.Parent, HTML: html})
	}
	slices.SortFunc(out, func(a, b fragment) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// byParent joins rendered fragments per container, for the first render.
func byParent(fs []fragment) map[string]template.HTML {
	m := map[string]template.HTML{}
	for _, f := range fs {
		m[f.Parent] += template.HTML(f.HTML) // rendered by html/template above
	}
	return m
}

// diff is what changed between two renders: new or changed fragments, and
// deletions of those gone.
func diff(prev map[string]string, cur []fragment) []fragment {
	var out []fragment
	seen := make(map[string]bool, len(cur))
	for _, f := range cur {
		seen[f.ID] = true
		if old, ok := prev[f.ID]; !ok || old != f.HTML {
			out = append(out, f)
		}
	}
	for id := range prev {
		if !seen[id] {
			out = append(out, fragment{ID: id, Del: true})
		}
	}
	return out
}

// timestamp parses an API timestamp ("" or bad: zero).
func timestamp(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
