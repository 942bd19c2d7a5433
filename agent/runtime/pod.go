package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/skiffhq/skiff/agent/image"
)

// podRecord is the pod's persisted state (pod.json): enough to re-attach.
type podRecord struct {
	Pod       Pod                   `json:"pod"`
	Sandbox   sandbox               `json:"sandbox"`
	StartTime time.Time             `json:"startTime"`
	InitDone  int                   `json:"initDone"`
	Stopped   bool                  `json:"stopped"`
	Failed    string                `json:"failed,omitempty"` // why an init container failed the pod
	Ctrs      map[string]*ctrRecord `json:"containers"`
}

// ctrRecord is one container's persisted state.
type ctrRecord struct {
	RestartCount int32             `json:"restartCount"`
	ImageID      string            `json:"imageID,omitempty"`
	LcID         string            `json:"lcID,omitempty"` // set while a libcontainer container exists
	StartedAt    time.Time         `json:"startedAt"`
	CgroupPaths  map[string]string `json:"cgroupPaths,omitempty"`
	Exec         execContext       `json:"exec"`
	Last         *StateTerminated  `json:"last,omitempty"`
	Final        *StateTerminated  `json:"final,omitempty"` // will not restart
}

// execContext is what an exec into the container inherits.
type execContext struct {
	Env    []string `json:"env"`
	Cwd    string   `json:"cwd"`
	UID    int      `json:"uid"`
	GID    int      `json:"gid"`
	Groups []int    `json:"groups,omitempty"`
}

// ctrRT is a container's in-memory state.
type ctrRT struct {
	spec   *Container
	isInit bool
	rec    *ctrRecord
	log    *containerLog

	lc       *libcontainer.Container
	pid      int
	exitCh   chan exitInfo
	attached bool // re-attached after a runtime restart: no exit code
	waiting  *StateWaiting
	started  bool
	ready    bool
	backoffN int
	killNote string // why the runtime killed it (liveness…)
	imageRef string
	// created: an attempt pre-created with the sandbox, waiting to exec.
	created *createdCtr
	// inst: the running process, for attach (attach.go); nil when none.
	inst *instance
}

type podRT struct {
	rt *Runtime

	mu   sync.Mutex
	rec  *podRecord
	ctrs map[string]*ctrRT
	// order: init containers then app containers.
	order []*ctrRT

	ctx      context.Context
	cancel   context.CancelFunc
	grace    time.Duration
	detached chan struct{}
	done     chan struct{}
	started  bool
	// stopMu serialises stops; stopped is set once one finished cleanly.
	// A stop cut short (its context ended mid-teardown, as when the agent
	// shuts down while removing a pod) is not remembered as done: the next
	// RemovePod tears down what is left instead of returning the old error.
	stopMu  sync.Mutex
	stopped bool
	logsUp  bool
}

func (r *Runtime) newPodRT(rec *podRecord) *podRT {
	if rec.Ctrs == nil {
		rec.Ctrs = map[string]*ctrRecord{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &podRT{rt: r, rec: rec, ctrs: map[string]*ctrRT{}, ctx: ctx, cancel: cancel,
		detached: make(chan struct{}), done: make(chan struct{}),
		grace: time.Duration(rec.Pod.grace()) * time.Second}
	add := func(cs []Container, isInit bool) {
		for i := range cs {
			c := &cs[i]
			cr := rec.Ctrs[c.Name]
			if cr == nil {
				cr = &ctrRecord{}
				rec.Ctrs[c.Name] = cr
			}
			ct := &ctrRT{spec: c, isInit: isInit, rec: cr, imageRef: c.Image,
				waiting: &StateWaiting{Reason: ReasonContainerCreating}}
			if !isInit && len(rec.Pod.InitContainers) > rec.InitDone {
				ct.waiting = &StateWaiting{Reason: ReasonPodInitializing}
			}
			ct.log = &containerLog{dir: filepath.Join(r.podDir(rec.Pod.UID), "fifo"), name: c.Name}
			p.ctrs[c.Name] = ct
			p.order = append(p.order, ct)
		}
	}
	add(rec.Pod.InitContainers, true)
	add(rec.Pod.Containers, false)
	return p
}

func (p *podRT) logPath(name string) string {
	return filepath.Join(p.rt.podDir(p.rec.Pod.UID), "logs", name+".log")
}

func (p *podRT) startLogs() error {
	if p.logsUp {
		return nil
	}
	for _, c := range p.order {
		lf, err := openLogFile(p.logPath(c.spec.Name), p.rt.cfg.LogMaxBytes, p.rt.cfg.LogMaxFiles)
		if err != nil {
			return err
		}
		c.log.file = lf
		if err := c.log.startPumps(); err != nil {
			return err
		}
	}
	p.logsUp = true
	return nil
}

func (p *podRT) stopLogs() {
	if !p.logsUp {
		return
	}
	for _, c := range p.order {
		c.log.stopPumps()
	}
	p.logsUp = false
}

// persist writes pod.json atomically. Callers hold p.mu or own p exclusively.
func (p *podRT) persist() error {
	b, err := json.Marshal(p.rec)
	if err != nil {
		return err
	}
	dir := p.rt.podDir(p.rec.Pod.UID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "pod.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("runtime: persist %s: %w", p.rec.Pod.UID, err)
	}
	return os.Rename(tmp, filepath.Join(dir, "pod.json"))
}

func (p *podRT) persistLocked() {
	if err := p.persist(); err != nil {
		p.rt.log.Error("persist pod", "uid", p.rec.Pod.UID, "err", err)
	}
}

func (p *podRT) start() {
	p.started = true
	go p.run()
}

func (p *podRT) isDetached() bool {
	select {
	case <-p.detached:
		return true
	default:
		return false
	}
}

// run is the pod's supervisor: init containers in order, then the app
// containers, each with its own restart loop.
func (p *podRT) run() {
	defer close(p.done)
	for _, c := range p.order {
		if !c.isInit {
			continue
		}
		p.mu.Lock()
		done := p.rec.InitDone > p.initIndex(c)
		p.mu.Unlock()
		if done {
			continue
		}
		if !p.runContainer(c) {
			return
		}
		p.mu.Lock()
		p.rec.InitDone = p.initIndex(c) + 1
		p.persistLocked()
		p.mu.Unlock()
	}
	p.mu.Lock()
	for _, c := range p.order {
		if !c.isInit && c.waiting != nil && c.waiting.Reason == ReasonPodInitializing {
			c.waiting = &StateWaiting{Reason: ReasonContainerCreating}
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range p.order {
		if c.isInit {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.runContainer(c)
		}()
	}
	wg.Wait()
}

func (p *podRT) initIndex(c *ctrRT) int {
	for i := range p.rec.Pod.InitContainers {
		if p.rec.Pod.InitContainers[i].Name == c.spec.Name {
			return i
		}
	}
	return -1
}

func (p *podRT) backoff(n int) time.Duration { return p.rt.backoffPolicy().delay(n) }

// sleep waits d unless the pod is stopping; false means stop.
func (p *podRT) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (p *podRT) setWaiting(c *ctrRT, reason, msg string) {
	p.mu.Lock()
	c.waiting = &StateWaiting{Reason: reason, Message: msg}
	p.mu.Unlock()
}

func pullReason(err error) string {
	switch {
	case errors.Is(err, image.ErrInvalidReference):
		return ReasonInvalidImageName
	case errors.Is(err, image.ErrNeverPull):
		return ReasonErrImageNeverPull
	}
	return ReasonErrImagePull
}

// runContainer runs c until it will not be restarted; true if it finally
// exited 0 (the init-container success case).
func (p *podRT) runContainer(c *ctrRT) bool {
	pullFailures := 0
	for {
		if p.ctx.Err() != nil {
			return false
		}
		fresh := !c.attached
		if !c.attached {
			var err error
			if cc := p.takeCreated(c); cc != nil {
				err = p.execContainer(c, cc) // created with the sandbox
			} else {
				img, pullErr := p.ensureImage(c)
				if pullErr != nil {
					pullFailures++
					p.setWaiting(c, pullReason(pullErr), pullErr.Error())
					p.rt.log.Warn("image pull failed", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", pullErr)
					// ErrImagePull is shown for the attempt; ImagePullBackOff
					// while waiting for the next one (as kubelet does).
					if !p.sleep(min(p.rt.cfg.BackoffBase/4, time.Second)) {
						return false
					}
					if pullReason(pullErr) == ReasonErrImagePull {
						p.setWaiting(c, ReasonImagePullBackOff, fmt.Sprintf("Back-off pulling image %q: %v", c.spec.Image, pullErr))
					}
					if !p.sleep(p.backoff(pullFailures)) {
						return false
					}
					continue
				}
				pullFailures = 0
				err = p.startContainer(c, img)
			}
			if err != nil {
				p.rt.log.Error("start container", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
				p.setWaiting(c, ReasonCreateError, err.Error())
				c.backoffN++
				if !p.sleep(p.backoff(c.backoffN)) {
					return false
				}
				continue
			}
		}
		exit, hookFailed := exitInfo{}, false
		if fresh {
			exit, hookFailed = p.postStart(c)
		}
		detached := false
		if !hookFailed {
			exit, detached = p.waitContainer(c)
		}
		if detached {
			return false
		}
		term := p.finishContainer(c, exit)
		p.mu.Lock()
		next := decideAfterExit(p.rt.backoffPolicy(), exited{Policy: p.rec.Pod.restartPolicy(), Init: c.isInit,
			Stopping: p.ctx.Err() != nil, ExitCode: term.ExitCode, Ran: term.FinishedAt.Sub(term.StartedAt), Restarts: c.backoffN})
		if !next.Restart {
			c.rec.Final = term
			if next.InitFailed {
				p.rec.Failed = fmt.Sprintf("init container %q failed: %s (exit %d)", c.spec.Name, term.Reason, term.ExitCode)
			}
			p.persistLocked()
			p.mu.Unlock()
			return next.Succeeded
		}
		c.backoffN = next.Restarts
		delay := next.Delay
		c.waiting = &StateWaiting{Reason: ReasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", delay, c.spec.Name, p.rec.Pod.Name)}
		p.persistLocked()
		p.mu.Unlock()
		if !p.sleep(delay) {
			return false
		}
		p.mu.Lock()
		c.rec.RestartCount++
		p.persistLocked()
		p.mu.Unlock()
		if c.log.file != nil {
			if err := c.log.file.newInstance(); err != nil {
				p.rt.log.Warn("container log: previous instance not kept", "pod", p.rec.Pod.UID, "container", c.spec.Name, "err", err)
			}
		}
	}
}

func (p *podRT) ensureImage(c *ctrRT) (*image.Image, error) {
	var opts image.PullOptions
	for _, s := range p.rec.Pod.ImagePullSecrets {
		kc, err := image.KeychainFromDockerConfigJSON(s)
		if err != nil {
			return nil, err
		}
		opts.Keychain = kc // last one wins; pods rarely have several
	}
	return p.rt.cfg.Images.Ensure(p.ctx, c.spec.Image, c.spec.ImagePullPolicy, opts)
}

// stop ends the pod: no more restarts, containers get SIGTERM then SIGKILL
// after grace, then the sandbox goes.
func (p *podRT) stop(ctx context.Context, grace *time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.stopped {
		return nil
	}
	if grace != nil {
		p.mu.Lock()
		p.grace = *grace
		p.mu.Unlock()
	}
	p.cancel()
	if p.started {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Attempts pre-created with the sandbox that run never reached.
	p.abortPrecreated()
	// Containers never started by run (re-attach of a stopped pod).
	for _, c := range p.order {
		if c.lc != nil {
			p.finishContainer(c, p.kill(c, 0))
		}
	}
	p.stopLogs()
	err := p.teardownSandbox(ctx) // idempotent: a retry deletes what is left
	p.mu.Lock()
	p.rec.Stopped = true
	p.persistLocked()
	p.mu.Unlock()
	p.stopped = err == nil
	return err
}

// detach stops supervising, leaving containers and sandbox as they are.
func (p *podRT) detach() {
	select {
	case <-p.detached:
		return
	default:
	}
	close(p.detached)
	p.cancel()
	if p.started {
		<-p.done
	}
	// Pre-created attempts have run nothing of the user's yet, and a new
	// runtime would not know them: remove them (run starts them afresh).
	p.abortPrecreated()
	p.mu.Lock()
	p.persistLocked()
	for _, c := range p.order {
		if c.inst != nil {
			// What this process held goes with it, as when the agent exits.
			c.inst.detach()
		}
	}
	p.mu.Unlock()
	p.stopLogs()
}

func (p *podRT) containerStatus(c *ctrRT) ContainerStatus {
	cs := ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: c.rec.ImageID,
		RestartCount: c.rec.RestartCount, Started: c.started, Ready: c.ready}
	if c.rec.Last != nil {
		last := *c.rec.Last
		cs.LastTerminationState.Terminated = &last
	}
	switch {
	case c.lc != nil && c.pid > 0:
		cs.State.Running = &StateRunning{StartedAt: c.rec.StartedAt}
		cs.PID = c.pid
		cs.ContainerID = "skiff://" + c.rec.LcID
	case c.rec.Final != nil:
		f := *c.rec.Final
		cs.State.Terminated = &f
		cs.Ready, cs.Started = false, false
	case c.waiting != nil:
		w := *c.waiting
		cs.State.Waiting = &w
	default:
		cs.State.Waiting = &StateWaiting{Reason: ReasonContainerCreating}
	}
	if cs.State.Running == nil {
		cs.Ready = false
	}
	return cs
}

func (p *podRT) status() PodStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PodStatus{UID: p.rec.Pod.UID, PodIP: p.rec.Sandbox.IP, StartTime: p.rec.StartTime,
		Initialized: p.rec.InitDone >= len(p.rec.Pod.InitContainers)}
	if p.rec.Stopped {
		st.PodIP = ""
	}
	allReady := true
	running, succeeded, failed, total := 0, 0, 0, 0
	for _, c := range p.order {
		cs := p.containerStatus(c)
		if c.isInit {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		total++
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			allReady = false
		}
		switch {
		case cs.State.Running != nil, cs.State.Waiting != nil && cs.State.Waiting.Reason == ReasonCrashLoopBackOff:
			running++
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			succeeded++
		case cs.State.Terminated != nil:
			failed++
		}
	}
	st.Ready = allReady && st.Initialized && !p.rec.Stopped
	switch {
	case p.rec.Failed != "":
		st.Phase, st.Message = PodFailed, p.rec.Failed
	case !st.Initialized:
		st.Phase = PodPending
	case running > 0:
		st.Phase = PodRunning
	case succeeded+failed == total && failed > 0:
		st.Phase = PodFailed
	case succeeded == total:
		st.Phase = PodSucceeded
	default:
		st.Phase = PodPending
	}
	return st
}
