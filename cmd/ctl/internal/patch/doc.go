// Package patch applies patches to Kubernetes-shaped JSON documents on the
// client side, for `ctl patch` and `ctl edit`: JSON Patch (RFC 6902, with
// RFC 6901 pointers) and a strategic merge patch (RFC 7386 merge, except
// that lists of objects whose elements carry a merge key — "name" for
// containers, env, volumes, volume mounts, named ports; "containerPort",
// "port", "ip", "type" where Kubernetes keys them — merge element by element
// instead of being replaced, and an element with "$patch": "delete"
// removes the one it matches). The server applies plain merge patches
// itself (the API's Patch call).
package patch
