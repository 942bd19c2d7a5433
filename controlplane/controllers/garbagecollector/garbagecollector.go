package garbagecollector

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
)

// Config tunes the sweep.
type Config struct {
	// Interval is the least time between two sweeps. A sweep reads every
	// object, so on a large cluster sweeps are spaced at least 20 times
	// their duration apart (under ~5% of a core).
	Interval time.Duration
}

// DefaultConfig sweeps every 10 s.
func DefaultConfig() Config { return Config{Interval: 10 * time.Second} }

// Loop sweeps while this node leads.
type Loop struct {
	*ctrlkit.Base
	cfg   Config
	sweep controllers.DeletionSweeper
}

// New returns the loop; sweep is this control node's API server.
func New(sweep controllers.DeletionSweeper, cfg Config, kit ctrlkit.Config) *Loop {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultConfig().Interval
	}
	l := &Loop{cfg: cfg, sweep: sweep}
	l.Base = ctrlkit.NewBase("garbagecollector", kit, nil)
	l.Go("sweep", l.run)
	return l
}

// NewLoop is the registry factory ("garbagecollector").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "garbagecollector", DefaultConfig())
	if err != nil {
		return nil, err
	}
	if d.Sweeper == nil {
		return nil, fmt.Errorf("%w: garbagecollector needs Deps.Sweeper (this control node's API server)", controllers.ErrConfig)
	}
	kit := ctrlkit.DefaultConfig(d.Client)
	kit.Logger = d.Logger
	return New(d.Sweeper, cfg, kit), nil
}

func (l *Loop) run(ctx context.Context) error {
	wait := l.cfg.Interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		start := time.Now()
		if err := l.sweep.Collect(ctx); err != nil && ctx.Err() == nil {
			l.Log.Warn("deletion sweep", "err", err)
		}
		wait = max(l.cfg.Interval, 20*time.Since(start))
	}
}
