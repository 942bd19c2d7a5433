package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// clusterRefresh is how often an open cluster page re-reads the members
// (the store's membership and revision have no watch).
const clusterRefresh = 2 * time.Second

// pageOf finds the page a request names and its parameters.
func pageOf(name, ns, pod string) (*page, url.Values, error) {
	p, ok := pages[name]
	if !ok {
		return nil, nil, fmt.Errorf("no page %q", name)
	}
	params := url.Values{"page": {name}}
	if p.Namespaced {
		if ns == "" || pod == "" {
			return nil, nil, fmt.Errorf("page %q needs ns and name", name)
		}
		params.Set("ns", ns)
		params.Set("name", pod)
	}
	return p, params, nil
}

// page serves a page's first render.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	g, ok := s.session(w, r)
	if !ok {
		return
	}
	name := r.PathValue("page")
	switch {
	case r.URL.Path == "/":
		name = "cluster"
	case r.PathValue("ns") != "":
		name = "pod"
	}
	p, params, err := pageOf(name, r.PathValue("ns"), r.PathValue("name"))
	if err != nil || (name == "pod" && r.PathValue("ns") == "") {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(asCaller(r.Context(), g.caller), 10*time.Second)
	defer cancel()
	v := newView(params)
	var loadErr error
	if _, err := s.load(ctx, p, v); err != nil {
		loadErr = err
	}
	frags, err := s.pages.render(p, v)
	if err != nil {
		s.log.Error("dashboard render", "page", name, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	plain := map[string]string{}
	for k := range params {
		plain[k] = params.Get(k)
	}
	main, err := s.pages.exec("page-"+p.Name, struct {
		In     map[string]template.HTML
		Params map[string]string
	}{byParent(frags), plain})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if loadErr != nil {
		main = fmt.Sprintf(`<p class="bad" id="load-error">%s</p>`, template.HTMLEscapeString(apiMessage(loadErr))) + main
	}
	type navItem struct {
		Href, Title string
		Current     bool
	}
	var nav []navItem
	for _, q := range navOrder {
		href := "/" + q.Name
		if q.Name == "cluster" {
			href = "/"
		}
		nav = append(nav, navItem{href, q.Title, q == p || (p.Name == "pod" && q.Name == "pods")})
	}
	html, err := s.pages.exec("layout", struct {
		Title, Page, Params, CSRF, User string
		Nav                             []navItem
		Main                            template.HTML
	}{p.Title, p.Name, params.Encode(), g.csrf, g.caller.User, nav, template.HTML(main)}) // main: rendered by html/template
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if loadErr != nil {
		w.WriteHeader(httpStatus(loadErr))
	}
	_, _ = w.Write([]byte(html))
}

// load lists every kind of p as the caller into v and reads the cluster
// and usage sources; it returns each kind's list revision.
func (s *Server) load(ctx context.Context, p *page, v *view) (map[string]string, error) {
	revs := map[string]string{}
	for _, kind := range p.Kinds {
		rv, err := s.list(ctx, kind, v.params.Get("ns"), p.Namespaced, v)
		if err != nil {
			return revs, err
		}
		revs[kind] = rv
	}
	s.refreshCluster(ctx, p, v)
	s.refreshUsage(ctx, p, v)
	return revs, nil
}

func (s *Server) list(ctx context.Context, kind, ns string, namespaced bool, v *view) (string, error) {
	if !namespaced {
		ns = ""
	}
	delete(v.objs, kind)
	v.objs[kind] = map[string]client.Object{}
	req := &apiv1.ListRequest{Kind: kind, Namespace: ns, Limit: 500}
	rv := ""
	for {
		l, err := s.cfg.API.List(ctx, req)
		if err != nil {
			return "", fmt.Errorf("list %s: %w", kind, err)
		}
		if rv == "" {
			rv = l.GetMetadata().GetResourceVersion()
		}
		for _, env := range l.GetItems() {
			o, err := client.Unpack(env)
			if err != nil {
				return "", fmt.Errorf("list %s: %w", kind, err)
			}
			v.put(kind, o)
		}
		if req.Continue = l.GetMetadata().GetContinue(); req.Continue == "" {
			return rv, nil
		}
	}
}

func (s *Server) refreshCluster(ctx context.Context, p *page, v *view) {
	if !p.Cluster || s.cfg.Cluster == nil {
		return
	}
	ms, err := s.cfg.Cluster.Members(ctx)
	v.members, v.clusterErr, v.revision = ms, "", s.cfg.Cluster.Revision()
	if err != nil {
		v.clusterErr = err.Error()
	}
}

func (s *Server) refreshUsage(ctx context.Context, p *page, v *view) {
	if !p.Usage {
		return
	}
	nodes, pods := listOf[*apiv1.Node](v, "Node"), listOf[*apiv1.Pod](v, "Pod")
	if s.cfg.Usage != nil {
		if u, err := s.cfg.Usage.NodeUsage(ctx, nodes, pods); err == nil {
			v.usage, v.measured = u, true
			return
		} else {
			s.log.Debug("node usage unavailable; showing requests", "err", err)
		}
	}
	v.usage, _ = requestedUsage{}.NodeUsage(ctx, nodes, pods)
	v.measured = false
}

// change is one watch event, or a watch's end (err; relist when the
// revision it resumed from is gone).
type change struct {
	kind string
	ev   *apiv1.WatchEvent
	err  error
}

// watch follows kind from rv as the caller until ctx ends or the watch
// fails; every event and the final error go to out.
func (s *Server) watch(ctx context.Context, kind, ns, rv string, out chan<- change) {
	send := func(c change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	stream, err := s.cfg.API.Watch(ctx, &apiv1.WatchRequest{Kind: kind, Namespace: ns, ResourceVersion: rv})
	if err != nil {
		send(change{kind: kind, err: err})
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			send(change{kind: kind, err: err})
			return
		}
		for _, ev := range resp.GetEvents() {
			if !send(change{kind: kind, ev: ev}) {
				return
			}
		}
	}
}

// live is a page's server-sent-events stream: the page's fragments at
// first (reset), then the fragments that change, as they change.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	g, ok := s.session(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	p, params, err := pageOf(q.Get("page"), q.Get("ns"), q.Get("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancel(asCaller(r.Context(), g.caller))
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	failure := func(err error) {
		fmt.Fprintf(w, "event: failure\ndata: %s\n\n", oneLine(apiMessage(err)))
		flusher.Flush()
	}
	v := newView(params)
	ns := params.Get("ns")
	changes := make(chan change, 256)
	watchFrom := func(kind, rv string) {
		wns := ""
		if p.Namespaced {
			wns = ns
		}
		go s.watch(ctx, kind, wns, rv, changes) // ends with ctx; its error comes back on changes
	}
	revs, err := s.load(ctx, p, v)
	if err != nil {
		failure(err)
		return
	}
	for kind, rv := range revs {
		watchFrom(kind, rv)
	}
	sent := map[string]string{}
	push := func(reset bool) bool {
		if err := s.stillValid(g); err != nil {
			failure(fmt.Errorf("session ended: %w", err))
			return false
		}
		cur, err := s.pages.render(p, v)
		if err != nil {
			s.log.Error("dashboard render", "page", p.Name, "err", err)
			return false
		}
		var out []fragment
		if reset {
			out = cur
		} else {
			out = diff(sent, cur)
		}
		clear(sent)
		for _, f := range cur {
			sent[f.ID] = f.HTML
		}
		if len(out) == 0 && !reset {
			return true
		}
		b, _ := json.Marshal(struct {
			Reset bool       `json:"reset,omitempty"`
			Frags []fragment `json:"frags"`
		}{reset, out})
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if !push(true) {
		return
	}
	var clusterTick, usageTick <-chan time.Time
	if p.Cluster && s.cfg.Cluster != nil {
		t := time.NewTicker(clusterRefresh)
		defer t.Stop()
		clusterTick = t.C
	}
	if p.Usage && s.cfg.Usage != nil {
		t := time.NewTicker(UsageRefresh)
		defer t.Stop()
		usageTick = t.C
	}
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-clusterTick:
			s.refreshCluster(ctx, p, v)
			dirty = true
		case <-usageTick:
			s.refreshUsage(ctx, p, v)
			dirty = true
		case c := <-changes:
			if c.err != nil {
				if ctx.Err() != nil {
					return
				}
				if status.Code(c.err) != codes.OutOfRange {
					s.log.Debug("dashboard watch ended; re-listing", "kind", c.kind, "err", c.err)
					if status.Code(c.err) == codes.PermissionDenied {
						failure(c.err)
						return
					}
					select { // a failing API: do not spin
					case <-time.After(time.Second):
					case <-ctx.Done():
						return
					}
				}
				rv, err := s.list(ctx, c.kind, ns, p.Namespaced, v)
				if err != nil {
					failure(err)
					return
				}
				watchFrom(c.kind, rv)
				s.refreshUsage(ctx, p, v)
			} else if err := apply(v, c); err != nil {
				s.log.Warn("dashboard watch event", "kind", c.kind, "err", err)
			}
			if !dirty {
				coalesce.Reset(s.cfg.Coalesce)
			}
			dirty = true
			continue
		case <-coalesce.C:
		}
		if dirty {
			dirty = false
			if p.Usage && s.cfg.Usage == nil {
				s.refreshUsage(ctx, p, v) // requests: derived from the pods just changed
			}
			if !push(false) {
				return
			}
		}
	}
}

func apply(v *view, c change) error {
	o, err := client.Unpack(c.ev.GetObject())
	if err != nil {
		return err
	}
	if c.ev.GetType() == apiv1.WatchEvent_DELETED {
		v.remove(c.kind, o)
	} else {
		v.put(c.kind, o)
	}
	return nil
}

// apiMessage is an API error as a person reads it: the server's message
// without the gRPC wrapping.
func apiMessage(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		prefix, _, _ := strings.Cut(err.Error(), "rpc error:")
		return strings.TrimSpace(prefix + " " + se.GRPCStatus().Message())
	}
	return err.Error()
}

func httpStatus(err error) int {
	switch status.Code(err) { // finds a status wrapped with %w
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.NotFound:
		return http.StatusNotFound
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Aborted, codes.AlreadyExists, codes.FailedPrecondition:
		return http.StatusConflict
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ") }
