package hpa

import (
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
)

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "hpa"; by default DefaultConfig, resync every 15 s).
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "hpa", DefaultConfig(d.Client))
	if err != nil {
		return nil, err
	}
	cfg.Client = d.Client
	if d.Logger != nil {
		cfg.Logger = d.Logger
	}
	return New(cfg), nil
}
