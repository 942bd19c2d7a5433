package runtime

import (
	"os"
	goruntime "runtime"

	"github.com/opencontainers/runc/libcontainer"

	// The v1 cgroup manager needs the devices controller programmed.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter's C constructor joins the container's namespaces before the Go
	// runtime starts, when the binary runs as "<self> init".
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init turns this process into a container's init when libcontainer
// re-executed us for it. The environment check keeps a user command that
// happens to be called "init" (ctl init) from being taken for one.
//
// It also pins the main goroutine to the main thread for the life of the
// program: libcontainer parks goroutines' threads in a container's mount
// namespace, and if that were the main thread the whole process would end
// up there (golang/go#34031).
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != "" {
		libcontainer.Init() // never returns
	}
	goruntime.LockOSThread()
}
