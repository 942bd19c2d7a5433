package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/probe"
)

// exitInfo is how a container process ended.
type exitInfo struct {
	code    int32
	signal  int32
	unknown bool // not our child: code not observable
	at      time.Time
}

func (p *podRT) lcID(c *ctrRT) string { return p.rec.Pod.UID + "_" + c.spec.Name }

func (p *podRT) cgroupPath(c *ctrRT) string {
	return filepath.Join(p.rt.podCgroup(p.rec.Pod.UID), c.spec.Name)
}

func (p *podRT) mountsFor(c *ctrRT, env []string) ([]mountSpec, error) {
	etc := filepath.Join(p.rt.podDir(p.rec.Pod.UID), "etc")
	ms := []mountSpec{
		{source: filepath.Join(etc, "hosts"), dest: "/etc/hosts"},
		{source: filepath.Join(etc, "hostname"), dest: "/etc/hostname"},
	}
	if p.rec.Pod.ResolvConf != "" {
		ms = append(ms, mountSpec{source: filepath.Join(etc, "resolv.conf"), dest: "/etc/resolv.conf"})
	}
	vols := map[string]Volume{}
	p.mu.Lock() // UpdateVolumes may swap a volume's source
	for _, v := range p.rec.Pod.Volumes {
		vols[v.Name] = v
	}
	p.mu.Unlock()
	for i, m := range c.spec.VolumeMounts {
		v := vols[m.Name]
		src, forceRO := v.Source.Mount(p.volumeDir(v.Name))
		field := fmt.Sprintf("%s.volumeMounts[%d]", c.spec.Name, i)
		sub, err := subPathOf(field, m, env)
		if err != nil {
			return nil, err
		}
		if sub != "" {
			if src, err = p.subPathSource(c, i, field, src, sub); err != nil {
				return nil, err
			}
		}
		ms = append(ms, mountSpec{source: src, dest: m.MountPath, readOnly: m.ReadOnly || forceRO})
	}
	return ms, nil
}

// createdCtr is one attempt of a container created up to the point where
// its init waits to exec the user's process (libcontainer's "created"
// state): namespaces joined, mounts and cgroups set up.
type createdCtr struct {
	lc   *libcontainer.Container
	proc *libcontainer.Process
	img  *image.Image
	ex   execContext
	pc   *phaseClock
	// inst holds the process's terminal or stdinOnce writer (attach.go).
	inst *instance
}

// startContainer creates and starts one attempt of c.
func (p *podRT) startContainer(c *ctrRT, img *image.Image) error {
	cc, err := p.createContainer(c, img)
	if err != nil {
		return err
	}
	return p.execContainer(c, cc)
}

// createContainer creates one attempt of c without starting its process.
func (p *podRT) createContainer(c *ctrRT, img *image.Image) (_ *createdCtr, retErr error) {
	r := p.rt
	pc := newPhaseClock()
	id := p.lcID(c)
	// A previous attempt (or a crash) may have left state behind.
	if old, err := libcontainer.Load(r.lcRoot(), id); err == nil {
		killAndWait(old)
		_ = old.Destroy()
	}
	pc.mark("load")
	rootfs, err := r.cfg.Images.MountRootfs(id, img)
	if err != nil {
		return nil, err
	}
	pc.mark("rootfs")
	defer func() {
		if retErr != nil {
			_ = r.cfg.Images.UnmountRootfs(id)
		}
	}()
	args, err := processArgs(c.spec, img.Config)
	if err != nil {
		return nil, err
	}
	u, err := processUser(c.spec, img.Config, rootfs)
	if err != nil {
		return nil, err
	}
	cwd := c.spec.WorkingDir
	if cwd == "" {
		cwd = img.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	ex := execContext{Env: processEnv(c.spec, img.Config, p.rec.Pod.hostname(), p.rec.Sandbox.IP), Cwd: cwd, UID: u.Uid, GID: u.Gid, Groups: u.Sgids}
	mounts, err := p.mountsFor(c, ex.Env)
	if err != nil {
		return nil, err
	}
	cfg := lcConfig(&p.rec.Pod, c.spec, &p.rec.Sandbox, rootfs, p.cgroupPath(c), r.cfg.PidsLimit, mounts)
	pc.mark("config")
	lc, err := libcontainer.Create(r.lcRoot(), id, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", c.spec.Name, err)
	}
	pc.mark("lc_create")
	defer func() {
		if retErr != nil {
			_ = lc.Destroy()
		}
	}()
	proc := &libcontainer.Process{Args: args, Env: ex.Env, Cwd: ex.Cwd, UID: ex.UID, GID: ex.GID,
		AdditionalGroups: ex.Groups, Init: true}
	inst, err := p.stdio(c, proc, func() error { return lc.Start(proc) })
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.spec.Name, err)
	}
	pc.mark("lc_start")
	return &createdCtr{lc: lc, proc: proc, img: img, ex: ex, pc: pc, inst: inst}, nil
}

// execContainer starts the user's process of a created container and
// supervises it from then on. On failure the attempt is removed.
func (p *podRT) execContainer(c *ctrRT, cc *createdCtr) error {
	r, lc, pc := p.rt, cc.lc, cc.pc
	pc.mark("until_exec")
	if err := lc.Exec(); err != nil {
		p.discardCreated(c, cc)
		return fmt.Errorf("start container %s: %w", c.spec.Name, err)
	}
	pc.mark("lc_exec")
	st, err := lc.State()
	if err != nil {
		p.discardCreated(c, cc)
		return fmt.Errorf("state of %s: %w", c.spec.Name, err)
	}
	proc := cc.proc
	exitCh := make(chan exitInfo, 1)
	go func() {
		ps, _ := proc.Wait()
		e := exitInfo{at: time.Now(), code: -1}
		if ps != nil {
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.signal = int32(ws.Signal())
				e.code = 128 + e.signal
			} else {
				e.code = int32(ps.ExitCode())
			}
		}
		exitCh <- e
	}()
	paths := map[string]string{}
	for k, v := range st.CgroupPaths {
		paths[k] = v
	}
	p.mu.Lock()
	c.lc, c.pid, c.exitCh, c.attached, c.inst = lc, st.InitProcessPid, exitCh, false, cc.inst
	if cc.inst.tty != nil {
		cc.inst.startTTY(c.log)
	}
	c.waiting, c.killNote = nil, ""
	c.started = c.spec.StartupProbe == nil
	c.ready = false
	c.rec.ImageID, c.rec.LcID, c.rec.StartedAt, c.rec.CgroupPaths, c.rec.Exec = cc.img.ID, p.lcID(c), time.Now(), paths, cc.ex
	p.persistLocked()
	p.mu.Unlock()
	pc.mark("record")
	pc.log(r.log, MsgContainerPhases, slog.String("pod", p.rec.Pod.UID), slog.String("container", c.spec.Name))
	return nil
}

// discardCreated kills and removes a created (or half-started) attempt of
// c and its rootfs.
func (p *podRT) discardCreated(c *ctrRT, cc *createdCtr) {
	_ = cc.lc.Signal(unix.SIGKILL)
	_, _ = cc.proc.Wait()
	cc.inst.discard()
	if err := cc.lc.Destroy(); err != nil {
		p.rt.log.Warn("destroy container", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
	}
	if err := p.rt.cfg.Images.UnmountRootfs(p.lcID(c)); err != nil {
		p.rt.log.Warn("unmount rootfs", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
	}
}

// firstToRun are the containers a new pod starts with: its first init
// container, or all app containers if it has none.
func (p *podRT) firstToRun() []*ctrRT {
	var out []*ctrRT
	for _, c := range p.order {
		if c.isInit {
			if p.initIndex(c) >= p.rec.InitDone {
				return []*ctrRT{c}
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// precreate creates the containers that run first (see createSandbox), if
// their image is already stored and their pull policy does not ask for a
// pull. A container it cannot create is left to the normal start path,
// which retries and reports the error.
func (p *podRT) precreate() {
	var wg sync.WaitGroup
	for _, c := range p.firstToRun() {
		policy := c.spec.ImagePullPolicy
		if policy == "" {
			policy = image.DefaultPullPolicy(c.spec.Image)
		}
		if policy == image.PullAlways || needsPodIP(c.spec) {
			continue
		}
		img, ok := p.rt.cfg.Images.Lookup(c.spec.Image)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := p.createContainer(c, img)
			if err != nil {
				p.rt.log.Debug("pre-create failed; starting the normal way", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
				return
			}
			p.mu.Lock()
			c.created = cc
			p.mu.Unlock()
		}()
	}
	wg.Wait()
}

// takeCreated hands over c's pre-created attempt, if any.
func (p *podRT) takeCreated(c *ctrRT) *createdCtr {
	p.mu.Lock()
	defer p.mu.Unlock()
	cc := c.created
	c.created = nil
	return cc
}

// abortPrecreated removes pre-created attempts that never ran.
func (p *podRT) abortPrecreated() {
	for _, c := range p.order {
		if cc := p.takeCreated(c); cc != nil {
			p.discardCreated(c, cc)
		}
	}
}

// waitContainer waits for c to exit while probing it. If the pod stops, it
// kills c with the grace period; if the runtime detaches, it returns at once.
func (p *podRT) waitContainer(c *ctrRT) (exitInfo, bool) {
	pctx, cancelProbes := context.WithCancel(p.ctx)
	defer cancelProbes()
	unhealthy := make(chan string, 1)
	set := probe.Set{Startup: c.spec.StartupProbe, Liveness: c.spec.LivenessProbe, Readiness: c.spec.ReadinessProbe}
	probesDone := make(chan struct{})
	if !c.isInit {
		go func() {
			defer close(probesDone)
			probe.Runner{Unit: p.rt.cfg.ProbeUnit, Metrics: p.rt.cfg.ProbeMetrics}.Run(pctx, set, p.probeTarget(c), c.rec.StartedAt, probe.Events{
				Started: func() { p.mu.Lock(); c.started = true; p.mu.Unlock() },
				Ready:   func(ok bool) { p.mu.Lock(); c.ready = ok; p.mu.Unlock() },
				Unhealthy: func(k probe.Kind, msg string) {
					select {
					case unhealthy <- fmt.Sprintf("%s probe failed: %s", k, msg):
					default:
					}
				},
			})
		}()
	} else {
		close(probesDone)
	}
	defer func() {
		cancelProbes()
		// A probe exec racing the container's death can take a moment to
		// notice; do not hold the restart hostage to it.
		select {
		case <-probesDone:
		case <-time.After(5 * time.Second):
			p.rt.log.Warn("probes slow to stop", "pod", p.rec.Pod.UID, "container", c.spec.Name)
		}
	}()
	select {
	case e := <-c.exitCh:
		return e, false
	case msg := <-unhealthy:
		p.mu.Lock()
		c.killNote = msg
		c.ready = false
		grace := p.grace
		p.mu.Unlock()
		p.rt.log.Info("container unhealthy, restarting", "pod", p.rec.Pod.UID, "container", c.spec.Name, "reason", msg)
		return p.kill(c, grace), false
	case <-p.ctx.Done():
		if p.isDetached() {
			return exitInfo{}, true
		}
		p.mu.Lock()
		grace := p.grace
		p.mu.Unlock()
		return p.kill(c, grace), false
	}
}

// kill sends SIGTERM, waits up to grace, then SIGKILL, and returns the exit.
func (p *podRT) kill(c *ctrRT, grace time.Duration) exitInfo {
	grace = p.preStop(c, grace)
	if grace > 0 {
		_ = c.lc.Signal(unix.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case e := <-c.exitCh:
			return e
		case <-t.C:
		}
	}
	_ = c.lc.Signal(unix.SIGKILL)
	return <-c.exitCh
}

// oomKilled reads the container cgroup's OOM-kill counter (cgroup v1
// memory.oom_control or v2 memory.events).
func oomKilled(paths map[string]string) bool {
	for _, f := range []string{filepath.Join(paths["memory"], "memory.oom_control"), filepath.Join(paths[""], "memory.events")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				if n, _ := strconv.Atoi(strings.TrimSpace(v)); n > 0 {
					return true
				}
			}
		}
	}
	return false
}

// finishContainer records c's termination and removes the attempt's
// container and rootfs.
func (p *podRT) finishContainer(c *ctrRT, e exitInfo) *StateTerminated {
	p.mu.Lock()
	paths := c.rec.CgroupPaths
	lc := c.lc
	p.mu.Unlock()
	oom := oomKilled(paths)
	if lc != nil {
		if err := lc.Destroy(); err != nil {
			p.rt.log.Warn("destroy container", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
		}
	}
	if err := p.rt.cfg.Images.UnmountRootfs(p.lcID(c)); err != nil {
		p.rt.log.Warn("unmount rootfs", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
	}
	if e.at.IsZero() {
		e.at = time.Now()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &StateTerminated{ExitCode: e.code, Signal: e.signal, StartedAt: c.rec.StartedAt, FinishedAt: e.at, Message: c.killNote}
	switch {
	case oom:
		t.Reason = ReasonOOMKilled
		if t.ExitCode <= 0 {
			t.ExitCode = 137
		}
	case e.unknown:
		t.Reason, t.ExitCode = ReasonUnknown, 137
		t.Message = "the container exited while the runtime was not its parent; exit code unknown"
	case e.code == 0:
		t.Reason = ReasonCompleted
	default:
		t.Reason = ReasonError
	}
	c.rec.Last = t
	c.rec.LcID, c.rec.CgroupPaths = "", nil
	if c.inst != nil {
		c.inst.finish(t.ExitCode)
	}
	c.lc, c.pid, c.exitCh, c.attached, c.inst = nil, 0, nil, false, nil
	c.ready, c.started = false, false
	_ = removeCgroupTree(p.cgroupPath(c))
	p.persistLocked()
	return t
}

// reattach rebuilds the in-memory pod from its record after a restart:
// running containers are loaded (not restarted) and watched through a
// pidfd; dead ones are recorded as exited and go through restart policy.
func (p *podRT) reattach() error {
	r := p.rt
	if p.rec.Stopped {
		for _, c := range p.order {
			if c.rec.Last != nil && c.rec.Final == nil {
				c.rec.Final = c.rec.Last
			}
		}
		return nil
	}
	for _, c := range p.order {
		if c.rec.LcID == "" {
			continue
		}
		lc, err := libcontainer.Load(r.lcRoot(), c.rec.LcID)
		if err != nil {
			r.log.Warn("container state lost; treating as exited", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
			c.attached, c.exitCh = true, closedExit()
			continue
		}
		c.lc = lc
		status, _ := lc.Status()
		st, err := lc.State()
		if err != nil || status != libcontainer.Running {
			c.attached, c.exitCh = true, closedExit()
			continue
		}
		ch, err := pidfdWaiter(st.InitProcessPid)
		if err != nil {
			c.attached, c.exitCh = true, closedExit()
			continue
		}
		// The pid could have been reused between Status and pidfd_open:
		// check again now that the pidfd pins it.
		if s2, _ := lc.Status(); s2 != libcontainer.Running {
			c.attached, c.exitCh = true, closedExit()
			continue
		}
		c.pid, c.exitCh, c.attached = st.InitProcessPid, ch, true
		c.inst = &instance{done: make(chan struct{}), reattached: true}
		c.waiting = nil
		c.started = c.spec.StartupProbe == nil
	}
	if err := p.startLogs(); err != nil {
		return err
	}
	p.start()
	return nil
}

func closedExit() chan exitInfo {
	ch := make(chan exitInfo, 1)
	ch <- exitInfo{unknown: true, at: time.Now()}
	return ch
}

// pidfdWaiter reports when pid exits, for a process that is not our child.
func pidfdWaiter(pid int) (chan exitInfo, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	ch := make(chan exitInfo, 1)
	go func() {
		defer f.Close()
		// A pidfd turns readable when the process exits; Read parks on the
		// netpoller until then instead of holding a thread.
		_ = rc.Read(func(fd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, 0)
			return err != nil || n > 0
		})
		ch <- exitInfo{unknown: true, at: time.Now()}
	}()
	return ch, nil
}

var errNoContainer = errors.New("no running container")
