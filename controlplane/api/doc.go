// Package api is the cluster API server: one gRPC service (skiff.api.v1.API)
// for every registered kind, served by every control node on top of the
// replicated store (consensus.Store).
//
// It owns what happens between a request and the store: caller identity
// from the mTLS peer certificate and the authorization hook, defaults and
// validation (from the kinds registry), admission (an ordered chain of
// plugins registered in admissionPlugins: namespace lifecycle, LimitRange
// defaults, ResourceQuota accounting, … StorageObjectInUseProtection: the
// in-use finalizers of new claims and volumes; each adds its compares to the same
// store transaction as the write), optimistic concurrency on
// resourceVersion (the store's mod_revision), generation bumps, graceful
// deletion and the other per-kind behaviour of the kind's Hooks, finalizers,
// cascading deletion through ownerReferences, declarative Apply, and watch
// streams that resume from any revision still in the store's history. For
// volume it batches: concurrent writes share store Batch entries (group
// commit), CreateMany creates several objects per call, and Bind commits
// many pods' bindings in one entry.
//
// Every object a request brings is refused unless all its strings are
// UTF-8 (utf8.go), and each client identity may hold only so many watches
// and calls at once (limits.go; control nodes are exempt).
//
// Objects are stored as deterministic protobuf under Kind.Key with
// metadata.resourceVersion cleared; reads set it from the key's mod_revision.
// Store errors are wrapped with %w inside the package and mapped to gRPC
// codes only by toStatus (errors.go), at the boundary.
package api
