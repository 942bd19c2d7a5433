package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// WatchReadyHeader is the response header a Watch sends once the watch is
// in place; a stream that ends without it failed before starting.
const WatchReadyHeader = "skiff-watch-ready"

// Watch implements apiv1.APIServer. Any node serves it from its own store:
// events arrive in revision order with each object's resourceVersion, so a
// client that loses its stream (or its server) resumes from the last
// resourceVersion it saw on any node, without gaps or repeats.
func (s *Server) Watch(req *apiv1.WatchRequest, stream apiv1.API_WatchServer) error {
	ctx := stream.Context()
	k, err := s.lookup(req.GetKind())
	if err != nil {
		return toStatus(err)
	}
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	id, _ := IdentityFrom(ctx)
	if err := s.authorizeAttrs(ctx, Attributes{Identity: id, Verb: "watch", Kind: k.Name, Namespace: ns, Name: req.GetName(),
		LabelSelector: req.GetLabelSelector()}); err != nil {
		return toStatus(err)
	}
	sel, err := parseSelection(k, req.GetLabelSelector(), req.GetFieldSelector())
	if err != nil {
		return toStatus(err)
	}
	from, err := parseRev("resource_version", req.GetResourceVersion())
	if err != nil {
		return toStatus(err)
	}
	start := int64(0) // from now
	if req.GetResourceVersion() != "" {
		start = from + 1
	}
	key, prefix := k.Prefix(ns), true
	if req.GetName() != "" {
		if k.Namespaced && ns == "" {
			ns = "default"
		}
		key, prefix = k.Key(ns, req.GetName()), false
	}
	var opts []consensus.WatchOption
	bookmarks := req.GetAllowBookmarks()
	if bookmarks {
		opts = append(opts, consensus.WithProgressNotify(bookmarkInterval))
	}
	w, err := s.store.Watch(ctx, []byte(key), prefix, start, opts...)
	if err != nil {
		return toStatus(watchErr(err, req.GetResourceVersion()))
	}
	defer w.Stop()
	// Tell the client the stream is established (headers) before the first
	// event, so it knows the watch is in place.
	if err := stream.SendHeader(metadata.Pairs(WatchReadyHeader, "1")); err != nil {
		return err
	}
	// A slow client holds at most: gRPC's per-stream flow-control window,
	// the response blocked in Send, and the store watcher's channel
	// (consensus Config.WatchBuffer batches); events live once, in the
	// store's shared bounded history, and a watcher that falls behind it
	// is cut off (ErrWatcherTooSlow: OutOfRange, re-list) rather than
	// given a private backlog (TestSlowWatcherIsCutOffNotBuffered). How
	// many such watches one client holds is capped per identity (limits.go).
	var bookmarked time.Time
	for batch := range w.C {
		resp := &apiv1.WatchResponse{}
		for _, ev := range batch.Events {
			we, err := s.watchEvent(k, ev, sel)
			if err != nil {
				return toStatus(err)
			}
			if we != nil {
				resp.Events = append(resp.Events, we)
			}
		}
		if len(resp.Events) == 0 {
			// A progress notification, or changes the selectors filter
			// out: a bookmark lets the client resume from here.
			if !bookmarks || (len(batch.Events) > 0 && time.Since(bookmarked) < bookmarkInterval) {
				continue
			}
			resp.Events = append(resp.Events, &apiv1.WatchEvent{Type: apiv1.WatchEvent_BOOKMARK, ResourceVersion: formatRev(batch.Revision)})
			bookmarked = time.Now()
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	if err := w.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return toStatus(watchErr(err, req.GetResourceVersion()))
	}
	return nil
}

// bookmarkInterval is how often, at most, a watch that asked for bookmarks
// and sees no change of its own gets one while other keys change. The
// store's history holds WatchHistory events (100,000 by default): a
// second is far less than the fastest writers take to roll it over.
const bookmarkInterval = time.Second

func watchErr(err error, rv string) error {
	if errors.Is(err, consensus.ErrCompacted) || errors.Is(err, consensus.ErrWatcherTooSlow) {
		return fmt.Errorf("%w: watch from resourceVersion %q: %w", ErrTooOld, rv, err)
	}
	return err
}

// watchEvent converts a store event for one watcher: with selectors, an
// object entering the selection is ADDED and one leaving it DELETED.
func (s *Server) watchEvent(k *kinds.Kind, ev *storepb.Event, sel selection) (*apiv1.WatchEvent, error) {
	rev := ev.Kv.ModRevision
	if sel.empty() {
		switch {
		case ev.Type == storepb.Event_DELETE:
			if ev.PrevKv == nil {
				return nil, nil
			}
			return &apiv1.WatchEvent{Type: apiv1.WatchEvent_DELETED, Object: s.watchDecodes.envelope(k, ev.PrevKv, rev), ResourceVersion: formatRev(rev)}, nil
		case ev.PrevKv == nil:
			return &apiv1.WatchEvent{Type: apiv1.WatchEvent_ADDED, Object: s.watchDecodes.envelope(k, ev.Kv, rev), ResourceVersion: formatRev(rev)}, nil
		default:
			return &apiv1.WatchEvent{Type: apiv1.WatchEvent_MODIFIED, Object: s.watchDecodes.envelope(k, ev.Kv, rev), ResourceVersion: formatRev(rev)}, nil
		}
	}
	prevIn, curIn := false, false
	if ev.PrevKv != nil {
		in, err := sel.matchesStored(s.watchDecodes.view(k, ev.PrevKv))
		if err != nil {
			return nil, err
		}
		prevIn = in
	}
	if ev.Type == storepb.Event_PUT {
		in, err := sel.matchesStored(s.watchDecodes.view(k, ev.Kv))
		if err != nil {
			return nil, err
		}
		curIn = in
	}
	// The object goes out as its stored bytes (with the event's revision),
	// as in the unselected case.
	var t apiv1.WatchEvent_Type
	var kv *storepb.KeyValue
	switch {
	case !prevIn && !curIn:
		return nil, nil
	case !prevIn:
		t, kv = apiv1.WatchEvent_ADDED, ev.Kv
	case !curIn:
		t, kv = apiv1.WatchEvent_DELETED, ev.PrevKv
	default:
		t, kv = apiv1.WatchEvent_MODIFIED, ev.Kv
	}
	return &apiv1.WatchEvent{Type: t, Object: s.watchDecodes.envelope(k, kv, rev), ResourceVersion: formatRev(rev)}, nil
}

// decodeCache prepares each stored record once for all the watches that
// send it: what selectors read of it (storedView), the envelope to send.
// Every watcher of a node sees the same immutable records, so a record's
// pointer identifies it. Without it, N agents each watching
// "spec.nodeName=<own node>" cost N decodes of every pod change (what
// Kubernetes' watch cache exists for), and N watchers N copies of each
// object. What it hands out is shared and read only (matching, marshaling,
// which protobuf allows concurrently); bounded to the most recent records.
type decodeCache struct {
	views     *recentCache[*storepb.KeyValue, *storedView]
	envelopes *recentCache[envelopeKey, *apiv1.Object]
}

// envelopeKey: a record sent at a revision (a deleted object goes out with
// the deletion's revision).
type envelopeKey struct {
	kv  *storepb.KeyValue
	rev int64
}

func newDecodeCache(size int) *decodeCache {
	return &decodeCache{views: newRecentCache[*storepb.KeyValue, *storedView](size),
		envelopes: newRecentCache[envelopeKey, *apiv1.Object](size)}
}

// view is the record's storedView, one per record.
func (c *decodeCache) view(k *kinds.Kind, kv *storepb.KeyValue) *storedView {
	v, _ := c.views.get(kv, func() (*storedView, error) { return &storedView{k: k, kv: kv}, nil })
	return v
}

// envelope is rawEnvelope(k, kv.Value, rev), built once per record and
// revision.
func (c *decodeCache) envelope(k *kinds.Kind, kv *storepb.KeyValue, rev int64) *apiv1.Object {
	env, _ := c.envelopes.get(envelopeKey{kv, rev}, func() (*apiv1.Object, error) { return rawEnvelope(k, kv.Value, rev), nil })
	return env
}

// recentCache keeps the values of the last size keys it computed.
type recentCache[K comparable, V any] struct {
	mu   sync.Mutex
	m    map[K]V
	ring []K
	used []bool
	next int
}

func newRecentCache[K comparable, V any](size int) *recentCache[K, V] {
	return &recentCache[K, V]{m: make(map[K]V, size), ring: make([]K, size), used: make([]bool, size)}
}

// get returns key's value, computing it (outside the lock) when absent.
// Concurrent misses may compute twice; the first stored wins.
func (c *recentCache[K, V]) get(key K, compute func() (V, error)) (V, error) {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := compute()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[key]; ok {
		return prev, nil
	}
	if c.used[c.next] {
		delete(c.m, c.ring[c.next])
	}
	c.ring[c.next], c.used[c.next] = key, true
	c.m[key] = v
	c.next = (c.next + 1) % len(c.ring)
	return v, nil
}
