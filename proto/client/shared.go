package client

import (
	"context"
	"fmt"
	"sync"
)

// InformerFactory shares one informer per kind and options among the
// consumers of one process (the leader's scheduler and controllers all
// watch pods): one watch stream, one decode per event and one cached copy
// instead of one per consumer. An informer runs while it has subscribers
// and stops with the last one, so the next subscriber starts from a fresh
// list.
type InformerFactory struct {
	c  *Client
	mu sync.Mutex
	m  map[string]*sharedInformer
}

type sharedInformer struct {
	inf    *Informer
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// NewInformerFactory returns a factory whose informers use c.
func NewInformerFactory(c *Client) *InformerFactory {
	return &InformerFactory{c: c, m: map[string]*sharedInformer{}}
}

// Subscribe registers h with the shared informer of kind and opts,
// starting it if needed, and returns it (wait with WaitForSync). Objects
// given to h are shared with the other subscribers: never modify them.
// release removes h; the last release stops the informer and waits for it.
func (f *InformerFactory) Subscribe(kind string, opts ListOptions, h EventHandler) (inf *Informer, release func()) {
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%s", kind, opts.Namespace, opts.LabelSelector, opts.FieldSelector)
	f.mu.Lock()
	s := f.m[key]
	if s == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s = &sharedInformer{inf: NewInformer(f.c, kind, opts, EventHandler{}), cancel: cancel, done: make(chan struct{})}
		f.m[key] = s
		go func() {
			defer close(s.done)
			_ = s.inf.Run(ctx) // retries internally; returns when cancelled
		}()
	}
	s.refs++
	f.mu.Unlock()
	remove := s.inf.AddHandler(h)
	var once sync.Once
	return s.inf, func() {
		once.Do(func() {
			remove()
			f.mu.Lock()
			s.refs--
			last := s.refs == 0
			if last {
				delete(f.m, key)
				s.cancel()
			}
			f.mu.Unlock()
			if last {
				<-s.done
			}
		})
	}
}
