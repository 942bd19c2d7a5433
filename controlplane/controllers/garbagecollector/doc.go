// Package garbagecollector is the leader loop that finishes deletions a
// crashed or restarted API server left undone: objects whose last
// finalizer went, foreground owners, terminating namespaces, dependents
// whose owners are gone. Requests queue that work on the API server that
// took them; this sweep, on the leader only, finds whatever such a queue
// lost. The sweep itself is the API server's (api.Server.Collect: it reads
// the store directly, decoding only metadata); this loop decides when it
// runs, like every leader loop, through controlplane/leader.go.
package garbagecollector
