package main

import (
	"os"

	// Handles libcontainer's re-exec in its init(), before cobra sees the
	// arguments: the agent starts a container by re-executing
	// /proc/self/exe as "<self> init" with _LIBCONTAINER_INITPIPE set.
	// `ctl init` (cluster creation) is the same word without that variable,
	// so the two never collide (see agent/runtime/reexec.go).
	_ "github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
