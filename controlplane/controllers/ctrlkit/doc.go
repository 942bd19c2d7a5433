// Package ctrlkit is what every Skiff leader loop shares: a Base that runs
// informers (list + watch caches), workers over rate-limited work queues
// and background tasks as one controlplane.Loop — every goroutine and
// informer handler turning a panic into an error (ErrPanic) that ends Run,
// so the leader's failure policy sees it — a read-your-writes guard (a
// sync waits until the caches hold this controller's own last writes, so a
// stale cache never makes it create a pod twice), and pod helpers (readiness,
// availability, owner references, deletion order, pods from templates with
// deterministic names).
//
// Caches can keep an owner index (ByOwner) so a sync reads its own pods
// rather than copying every pod, and (TrackReleases) remember objects just
// released by an owner so that owner does not adopt them straight back
// (the Orphan deletion race with the API server's garbage collector).
//
// Deterministic pod names matter for leader changes: a deposed leader's
// late create of "the next pod" collides with the new leader's create of
// the same name (AlreadyExists) instead of adding a pod; updates and
// deletes carry resourceVersion preconditions for the same reason.
package ctrlkit
