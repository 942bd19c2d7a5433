package node

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/netip"

	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// nodeStreams is how a control node's API server reaches the agents'
// stream ports: with this node's certificate (src), expecting the node's
// own serving certificate at its InternalIP, and with every exec, attach
// and port-forward (refused ones too) in the audit log.
func nodeStreams(bundle *pki.Bundle, src pki.CertSource, log *audit.Log, lg *slog.Logger) api.NodeStreamsConfig {
	return api.NodeStreamsConfig{
		TLS: func(node string, ip netip.Addr) *tls.Config { return bundle.NodeClientConfig(src, node, ip) },
		Audit: func(_ context.Context, r api.StreamAudit) {
			if log == nil {
				return
			}
			e := audit.Entry{User: r.Identity.User, Verb: "create", Kind: "Pod", Subresource: r.Subresource,
				Namespace: r.Namespace, Name: r.Pod, Container: r.Container, Command: r.Command, Port: r.Port}
			if id, err := pki.IdentityFromNames(r.Identity.User, r.Identity.Groups); err == nil {
				e.Role = string(id.Role)
			}
			st := status.Convert(r.Err)
			e.Code = st.Code().String()
			if r.Err != nil {
				e.Message = st.Message()
			}
			if err := log.Record(e); err != nil {
				lg.Error("audit log write failed", "err", err)
			}
		},
	}
}
