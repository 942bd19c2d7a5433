package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

type logsFlags struct {
	follow, timestamps, previous, allContainers, prefix bool
	tail                                                int64
	since                                               time.Duration
	sinceTime, container, selector                      string
}

func (o *options) logsCmd() *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs [-f] [-c CONTAINER | --all-containers] (POD | TYPE/NAME | -l SELECTOR)",
		Short: "Print the logs of a container in a pod",
		Long: `Print the logs of a container in a pod, as kubectl logs does. TYPE/NAME
may name a deployment, replicaset, job, statefulset or daemonset: one of
its pods is used. Viewers may read logs; the API server relays them from
the pod's node.`,
		Example: `  ctl logs web-1
  ctl logs -f deploy/web --tail 20
  ctl logs job/migrate --all-containers --timestamps
  ctl logs -l app=web --prefix --since 10m
  ctl logs web-1 -c sidecar --previous`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (f.selector == "") {
				return errors.New("give one pod (POD or TYPE/NAME) or a selector (-l), not both or neither")
			}
			if f.allContainers && f.container != "" {
				return errors.New("--all-containers and -c are exclusive")
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.logs(ctx, f, args)
		},
		ValidArgsFunction: o.completeNames("Pod"),
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep streaming the log (across restarts of the container)")
	fl.Int64Var(&f.tail, "tail", -1, "lines of recent log to show; -1 all (10 with -l)")
	fl.DurationVar(&f.since, "since", 0, "only logs newer than this (e.g. 5s, 2m, 3h)")
	fl.StringVar(&f.sinceTime, "since-time", "", "only logs after this RFC 3339 time")
	fl.BoolVar(&f.timestamps, "timestamps", false, "prefix each line with its RFC3339Nano time")
	fl.BoolVarP(&f.previous, "previous", "p", false, "the previous instance of the container (before its last restart)")
	fl.StringVarP(&f.container, "container", "c", "", "the container (default: the only or first one)")
	fl.BoolVar(&f.allContainers, "all-containers", false, "every container of the pod(s)")
	fl.StringVarP(&f.selector, "selector", "l", "", "the pods with these labels (e.g. app=web)")
	fl.BoolVar(&f.prefix, "prefix", false, "prefix each line with [pod/NAME/CONTAINER]")
	return cmd
}

func (o *options) logs(ctx context.Context, f logsFlags, args []string) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ns := o.ns()
	opts := client.LogOptions{Follow: f.follow, Timestamps: f.timestamps, Previous: f.previous}
	if f.tail >= 0 {
		opts.TailLines = &f.tail
	} else if f.selector != "" {
		ten := int64(10) // kubectl's default with a selector
		opts.TailLines = &ten
	}
	switch {
	case f.since > 0 && f.sinceTime != "":
		return errors.New("--since and --since-time are exclusive")
	case f.since > 0:
		opts.Since = time.Now().Add(-f.since)
	case f.sinceTime != "":
		t, err := time.Parse(time.RFC3339, f.sinceTime)
		if err != nil {
			return fmt.Errorf("--since-time %q: want RFC 3339 (2006-01-02T15:04:05Z): %w", f.sinceTime, err)
		}
		opts.Since = t
	}
	lookup, cancel := o.ctx(ctx)
	var pods []*apiv1.Pod
	if f.selector != "" {
		pods, _, err = client.List[*apiv1.Pod](lookup, c, client.ListOptions{Namespace: ns, LabelSelector: f.selector})
		if err == nil && len(pods) == 0 {
			err = fmt.Errorf("no pods in namespace %s match %s", ns, f.selector)
		}
		sortPods(pods)
	} else {
		var p *apiv1.Pod
		if p, err = o.onePod(lookup, c, ns, args[0]); err == nil {
			pods = []*apiv1.Pod{p}
		}
	}
	cancel()
	if err != nil {
		return err
	}
	type source struct{ pod, container string }
	var sources []source
	for _, p := range pods {
		name := p.GetMetadata().GetName()
		switch {
		case f.allContainers:
			for _, ct := range append(append([]*apiv1.Container(nil), p.GetSpec().GetInitContainers()...), p.GetSpec().GetContainers()...) {
				sources = append(sources, source{name, ct.GetName()})
			}
		case f.container != "":
			sources = append(sources, source{name, f.container})
		default:
			sources = append(sources, source{name, defaultContainer(p, o.streams.Err)})
		}
	}
	// Output is buffered: a chunk of log arrives in the pieces (HTTP/2
	// frames of 16 KiB) it came in, and is written out whole, once per
	// chunk (the client flushes after each).
	bw := bufio.NewWriterSize(o.streams.Out, 256<<10)
	out := &lineMux{w: bw}
	defer func() { _ = out.flushOut() }()
	writer := func(s source) io.Writer {
		if !f.prefix {
			return out.source("")
		}
		return out.source(fmt.Sprintf("[pod/%s/%s] ", s.pod, s.container))
	}
	if !f.follow || len(sources) == 1 {
		for _, s := range sources { // one after the other, as kubectl prints them
			o := opts
			o.Container = s.container
			w := writer(s)
			if err := c.Logs(ctx, ns, s.pod, o, w); err != nil {
				if ctx.Err() != nil {
					return nil // interrupted: a follow ends so
				}
				return err
			}
			out.flush(w)
		}
		return nil
	}
	// Following several: all at once, whole lines interleaved.
	errs := make(chan error, len(sources))
	for _, s := range sources {
		go func() {
			o := opts
			o.Container = s.container
			w := writer(s)
			err := c.Logs(ctx, ns, s.pod, o, w)
			out.flush(w)
			errs <- err
		}()
	}
	var first error
	for range sources {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// lineMux writes several sources' output to w in whole lines, each with
// its source's prefix.
type lineMux struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// flushOut writes out what the buffer holds.
func (m *lineMux) flushOut() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.w.Flush()
}

type lineSource struct {
	m       *lineMux
	prefix  string
	pending []byte
}

func (m *lineMux) source(prefix string) io.Writer { return &lineSource{m: m, prefix: prefix} }

// Flush is called by the client after each message of the log.
func (s *lineSource) Flush() error { return s.m.flushOut() }

func (s *lineSource) Write(p []byte) (int, error) {
	if s.prefix == "" {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		return s.m.w.Write(p)
	}
	s.pending = append(s.pending, p...)
	i := bytes.LastIndexByte(s.pending, '\n')
	if i < 0 {
		return len(p), nil
	}
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(s.pending[:i+1], []byte("\n")) {
		if len(line) > 0 {
			b.WriteString(s.prefix)
			b.Write(line)
		}
	}
	s.pending = append(s.pending[:0], s.pending[i+1:]...)
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, err := s.m.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes a source's unfinished last line.
func (m *lineMux) flush(w io.Writer) {
	s, ok := w.(*lineSource)
	if !ok || len(s.pending) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = fmt.Fprintf(m.w, "%s%s\n", s.prefix, s.pending)
	_ = m.w.Flush()
	s.pending = nil
}
