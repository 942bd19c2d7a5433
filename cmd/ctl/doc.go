// Command ctl is Skiff's one binary: the client verbs (apply, get, describe,
// delete, scale …) and the node commands, `ctl init` / `ctl join` / `ctl
// agent`, that run control and worker nodes. Verb logic lives in internal/cli; this file is
// wiring only.
package main
