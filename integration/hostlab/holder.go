package hostlab

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment of a holder: the current binary re-executed as PID 1 of a
// new set of namespaces.
const (
	envHolder = "SKIFF_HOSTLAB_HOLDER" // the hostname
	envVarLib = "SKIFF_HOSTLAB_VARLIB" // the directory bound on /var/lib
)

// holderFlags are the namespaces of a host. A new PID namespace makes the
// holder its init: the kernel kills everything in it when the holder dies.
const holderFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWPID

// init turns any binary that links hostlab into a holder when started by
// startHolder; it never returns then.
func init() {
	name, ok := os.LookupEnv(envHolder)
	if !ok {
		return
	}
	if err := holdNamespaces(name, os.Getenv(envVarLib)); err != nil {
		fmt.Fprintln(os.Stderr, "hostlab holder:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// holdNamespaces prepares the host (mounts private to it, its own /proc,
// hostname, a private /run and, if given, varLib on /var/lib), says
// "ready" on stdout, then reaps orphans (it is their init) until SIGTERM.
func holdNamespaces(name, varLib string) error {
	// First: nothing mounted in this host may reach the machine's mount
	// namespace (the default propagation there is shared).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount /run: %w", err)
	}
	if varLib != "" {
		if err := unix.Mount(varLib, "/var/lib", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on /var/lib: %w", varLib, err)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("ready")
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return nil // the kernel ends the rest of the host
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}

// startHolder starts the holder of a new host named name. The holder dies
// with the calling process (Pdeathsig), taking the host with it.
func startHolder(name, varLib, logPath string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envHolder+"="+name, envVarLib+"="+varLib)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: holderFlags, Pdeathsig: syscall.SIGKILL, Setsid: true}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start holder of %s: %w", name, err)
	}
	buf := make([]byte, 16)
	n, _ := out.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "ready") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("holder of %s did not start: %s", name, strings.TrimSpace(string(b)))
	}
	return cmd, nil
}
