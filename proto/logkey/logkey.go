package logkey

import "log/slog"

// The keys. Pod is a pod's name (with Namespace beside it), never its UID
// (UID is a key of its own).
const (
	Node      = "node"
	Namespace = "namespace"
	Pod       = "pod"
	Kind      = "kind"
	Name      = "name"
	RequestID = "request_id"
	UID       = "uid"
	Err       = "err"
)

// PodAttrs are a pod's namespace and name.
func PodAttrs(namespace, name string) []any {
	return []any{slog.String(Namespace, namespace), slog.String(Pod, name)}
}

// ObjectAttrs are an object's kind, namespace (when namespaced) and name.
func ObjectAttrs(kind, namespace, name string) []any {
	if namespace == "" {
		return []any{slog.String(Kind, kind), slog.String(Name, name)}
	}
	return []any{slog.String(Kind, kind), slog.String(Namespace, namespace), slog.String(Name, name)}
}
