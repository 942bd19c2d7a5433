// Package cli implements ctl's client verbs with kubectl's habits: apply,
// get, describe, delete, scale, create namespace, version and completion.
// Commands run in-process (Run) so tests drive the exact code path users
// do.
package cli
