package agent

import (
	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// lifecycle converts a container's postStart/preStop hooks. tcpSocket
// handlers are deprecated in Kubernetes and never run by kubelet; they are
// refused here rather than silently ignored.
func lifecycle(field string, l *apiv1.Lifecycle, ports []*apiv1.ContainerPort) (*runtime.Lifecycle, error) {
	if l == nil {
		return nil, nil
	}
	out := &runtime.Lifecycle{}
	for _, h := range []struct {
		name string
		in   *apiv1.LifecycleHandler
		out  **runtime.LifecycleHandler
	}{{"postStart", l.GetPostStart(), &out.PostStart}, {"preStop", l.GetPreStop(), &out.PreStop}} {
		if h.in == nil {
			continue
		}
		f := field + ".lifecycle." + h.name
		rh := &runtime.LifecycleHandler{}
		switch in := h.in; {
		case in.GetExec() != nil:
			rh.Exec = &probe.ExecAction{Command: in.GetExec().GetCommand()}
		case in.GetHttpGet() != nil:
			g := in.GetHttpGet()
			port, err := portNumber(f+".httpGet.port", g.GetPort(), ports)
			if err != nil {
				return nil, err
			}
			rh.HTTPGet = &probe.HTTPGetAction{Path: g.GetPath(), Port: port, Host: g.GetHost(), Scheme: g.GetScheme()}
			for _, hd := range g.GetHttpHeaders() {
				rh.HTTPGet.HTTPHeaders = append(rh.HTTPGet.HTTPHeaders, probe.HTTPHeader{Name: hd.GetName(), Value: hd.GetValue()})
			}
		case in.GetSleep() != nil:
			rh.Sleep = &runtime.SleepAction{Seconds: in.GetSleep().GetSeconds()}
		case in.GetTcpSocket() != nil:
			return nil, configErr("%s.tcpSocket: deprecated and not run by Kubernetes; use exec, httpGet or sleep", f)
		default:
			return nil, configErr("%s: needs exec, httpGet or sleep", f)
		}
		*h.out = rh
	}
	return out, nil
}
