package ctrlkit

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/skiffhq/skiff/proto/client"
)

// ErrPanic: a goroutine of a loop panicked. Run returns it (wrapped, with
// the value and stack), so the leader's failure policy counts it like any
// failure: the loop restarts with backoff from fresh caches, and a node
// whose loop keeps failing gives leadership up.
var ErrPanic = errors.New("panic in leader loop")

// group runs one Run's goroutines. The first error or panic cancels the
// others and is what Run returns; nothing a goroutine of a loop does can
// vanish or take the process down.
type group struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

// fail keeps the first error and cancels the group's context.
func (g *group) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cancel()
}

func (g *group) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Recovered, deferred directly, turns a panic into an ErrPanic error in
// *err naming what panicked, with the stack. Goroutines a loop starts
// outside Base's own (a batch of parallel calls) use it and hand the error
// back to a goroutine of Base, so it ends Run like any panic.
func Recovered(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: %v\n%s", ErrPanic, what, r, debug.Stack())
	}
}

// run calls fn in a new goroutine; an error or panic fails the group.
func (g *group) run(what string, fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := func() (err error) {
			defer Recovered(what, &err)
			return fn()
		}()
		if err != nil {
			g.fail(fmt.Errorf("%s: %w", what, err))
		}
	}()
}

// guard wraps an informer's handler: a panic in it (it runs on the
// informer's goroutine) fails the group instead of the process.
func (g *group) guard(kind string, h client.EventHandler) client.EventHandler {
	out := client.EventHandler{}
	if f := h.OnAdd; f != nil {
		out.OnAdd = func(o client.Object) {
			defer g.recoverHandler(kind)
			f(o)
		}
	}
	if f := h.OnUpdate; f != nil {
		out.OnUpdate = func(old, o client.Object) {
			defer g.recoverHandler(kind)
			f(old, o)
		}
	}
	if f := h.OnDelete; f != nil {
		out.OnDelete = func(o client.Object) {
			defer g.recoverHandler(kind)
			f(o)
		}
	}
	return out
}

func (g *group) recoverHandler(kind string) {
	if r := recover(); r != nil {
		g.fail(fmt.Errorf("%w: handler of %s: %v\n%s", ErrPanic, kind, r, debug.Stack()))
	}
}
