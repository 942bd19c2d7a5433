package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// watcher notes when each pod is first seen and first seen bound. It reads
// only the name and spec.nodeName from each event's bytes instead of
// decoding whole pods into an informer's cache: it runs in the measured
// process, and the measuring should cost as little of its CPU as it can.
type watcher struct {
	mu      sync.Mutex
	created map[string]time.Time
	bound   map[string]time.Time
	nBound  atomic.Int64
}

// run watches the bench namespace's pods from revision rv until ctx ends,
// resuming after an interrupted stream from the last revision seen.
func (w *watcher) run(ctx context.Context, cl *client.Client, rv string) {
	for ctx.Err() == nil {
		stream, err := cl.API().Watch(ctx, &apiv1.WatchRequest{Kind: "Pod", Namespace: "bench", ResourceVersion: rv})
		if err != nil {
			fmt.Fprintf(os.Stderr, "watch: %v (retrying)\n", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "watch: %v (resuming at %s)\n", err, rv)
				}
				break
			}
			for _, ev := range resp.GetEvents() {
				rv = ev.GetResourceVersion()
				if ev.GetType() != apiv1.WatchEvent_ADDED && ev.GetType() != apiv1.WatchEvent_MODIFIED {
					continue
				}
				name, node, err := podNameAndNode(ev.GetObject().GetObject().GetValue())
				if err != nil {
					fmt.Fprintf(os.Stderr, "watch: %v\n", err)
					continue
				}
				w.seen("bench/"+name, node)
			}
		}
	}
}

func (w *watcher) seen(key, node string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.created[key]; !ok {
		// Pods a controller creates: their creation is when the watch
		// first shows them (direct creates note the call's start).
		w.created[key] = now
	}
	if node == "" {
		return
	}
	if _, ok := w.bound[key]; !ok {
		w.bound[key] = now
		w.nBound.Add(1)
	}
}

// Field numbers in proto/api/v1: Pod.metadata, Pod.spec,
// ObjectMeta.name, PodSpec.nodeName.
const (
	podMetadataField  = 3
	podSpecField      = 4
	metaNameField     = 1
	specNodeNameField = 12
)

// podNameAndNode reads metadata.name and spec.nodeName from an encoded Pod
// (repeated occurrences merge: the last value wins, as in a decoder).
func podNameAndNode(b []byte) (name, node string, err error) {
	err = eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case podMetadataField:
			return eachField(v, func(num protowire.Number, v []byte) error {
				if num == metaNameField {
					name = string(v)
				}
				return nil
			})
		case podSpecField:
			return eachField(v, func(num protowire.Number, v []byte) error {
				if num == specNodeNameField {
					node = string(v)
				}
				return nil
			})
		}
		return nil
	})
	if err == nil && name == "" {
		err = errors.New("pod without a name")
	}
	return name, node, err
}

// eachField calls f with each length-delimited field of b.
func eachField(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}
