package controllers

import (
	"context"
	"fmt"
	"sync"

	"github.com/skiffhq/skiff/proto/client"
)

// Watch returns an informer of kind delivering to h until ctx ends: the
// shared one from f when there is a factory (one watch and one cache per
// kind for all of a leader's loops), else a private one. Either way it runs
// in a goroutine that wg tracks; wait for its first list with WaitForSync.
func Watch(ctx context.Context, wg *sync.WaitGroup, f *client.InformerFactory, c *client.Client,
	kind string, opts client.ListOptions, h client.EventHandler) *client.Informer {
	wg.Add(1)
	if f != nil {
		inf, release := f.Subscribe(kind, opts, h)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			release()
		}()
		return inf
	}
	inf := client.NewInformer(c, kind, opts, h)
	go func() {
		defer wg.Done()
		_ = inf.Run(ctx) // retries internally; returns when ctx ends
	}()
	return inf
}

// WaitForSync waits until every informer has its first list (or ctx ends).
func WaitForSync(ctx context.Context, infs ...*client.Informer) error {
	for _, inf := range infs {
		if err := inf.WaitForSync(ctx); err != nil {
			return fmt.Errorf("informers: %w", err)
		}
	}
	return nil
}
