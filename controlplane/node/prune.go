package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// tokenPruner is the leader loop that drops long-dead join tokens and the
// revocations no certificate can outlive any more. Dead tokens are kept a
// week (tokenKeep) so that their use is reported as "expired"/"revoked"
// rather than "unknown", then dropped. It is a leader
// loop like the controllers, started and stopped by controlplane/leader.go,
// instead of a check of IsLeader in a loop every node runs.
type tokenPruner struct {
	tokens      *pki.Tokens
	revocations *revocations
	store       *consensus.Store
	every       time.Duration
	log         *slog.Logger
}

func (p tokenPruner) Name() string { return "tokenpruner" }

// Run prunes at once and then every p.every until ctx ends. A failed
// prune is logged and tried again next time: the tokens are only kept
// longer than needed.
func (p tokenPruner) Run(ctx context.Context) error {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = p.every
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := p.tokens.Prune(pctx, tokenKeep)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.Warn("pruning join tokens", "err", err)
		case n > 0:
			p.log.Info("pruned dead join tokens", "count", n)
		}
		if p.revocations == nil {
			continue
		}
		pctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		n, err = p.revocations.prune(pctx, time.Now())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.Warn("pruning expired revocations", "err", err)
		case n > 0:
			p.log.Info("pruned revocations no certificate can outlive", "count", n)
		}
		pctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		n, err = pruneCertRecords(pctx, p.store, time.Now())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.Warn("pruning certificate records", "err", err)
		case n > 0:
			p.log.Info("pruned records of expired certificates", "count", n)
		}
	}
}
