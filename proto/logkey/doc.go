// Package logkey names the attributes every daemon's log lines share, so
// that a line about a pod reads the same from the API server, a controller
// and an agent (and a JSON log, --log-format json, can be filtered on one
// key): node, namespace, pod, kind, name, request_id, err.
package logkey
