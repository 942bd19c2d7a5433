package main

import (
	"os"

	// Handles libcontainer's re-exec ("ctl init" with _LIBCONTAINER_INITPIPE
	// set) in its init(), before cobra sees the arguments (see HOOK below).
	_ "github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
)

// HOOK (libcontainer re-exec): the agent starts containers by re-executing
// /proc/self/exe with argv[1] == "init" and _LIBCONTAINER_INITPIPE set.
// That dispatch must happen in an init() function of this package, before
// cobra sees the arguments: if os.Args[1] == "init" &&
// os.Getenv("_LIBCONTAINER_INITPIPE") != "" { runtime.LockOSThread();
// libcontainer.Init() } (plus the nsenter and cgroups/devices blank
// imports; see /work/shared/NOTES.md). `ctl init` (cluster creation) is the
// same word without that variable, so the two never collide.

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
