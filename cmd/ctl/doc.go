// Command ctl is Skiff's one binary: the client verbs (apply, get, describe,
// delete, scale …) and, from issue 4 on, `ctl init` / `ctl join` that run
// control and worker nodes. Verb logic lives in internal/cli; this file is
// wiring only.
package main
