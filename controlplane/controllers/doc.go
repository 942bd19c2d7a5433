// Package controllers holds the leader-only reconcilers (one sub-package
// per controller) and what they share: the Registry every controller is
// listed in once (builtin.Register adds them all), the Deps each one is
// built from (a client of this control node's API server, logger, metrics,
// event recorder, per-controller config, the API server's deletion sweep),
// and a deduplicating work queue with rate-limited retries. Every leader
// loop, the scheduler included, runs on ctrlkit.Base.
//
// Controllers talk to the cluster only through the public API client
// (proto/client): list+watch informers for reading, writes with
// resourceVersion preconditions so a deposed leader's late write is
// rejected. Each Run builds its caches afresh, so a new leader starts from
// the store's current state.
package controllers
