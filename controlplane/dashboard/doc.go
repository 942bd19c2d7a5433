// Package dashboard is the web dashboard every control node serves over
// HTTPS (port 7448 by default, beside the API's 7443).
//
// Who may use it: anyone who may call the API. `ctl dashboard` makes an
// authenticated call (mutual TLS with the caller's client certificate, on
// the dashboard port) that mints a login token: random, single use, valid
// 60 s, tied to the certificate's identity. Node and control-node
// identities are refused. The browser trades the token for a session
// cookie (HttpOnly, Secure, SameSite=Strict) and from then on every read,
// watch and action of a page is an API call made as that identity, so a
// viewer sees and an admin acts, and a refused action shows the API's own
// error. Actions (scale, restart, undo) are POSTs that also carry the
// session's CSRF token in a header and a same-origin Origin.
//
// How it reaches the API: InProcess serves the node's own API server on an
// in-memory listener with the API's interceptors (identity, limits,
// metrics, and whatever the node adds: the audit log); the caller's name
// and groups travel as metadata that only that listener accepts — nothing
// on the network can reach it.
//
// Pages are server-rendered (html/template) from the API's objects; each is
// a set of fragments (table rows, summaries, SVG pictures) keyed by element
// id. A page keeps a server-sent-events stream open; the server lists and
// watches the page's kinds as the caller, re-renders on change and sends
// only the fragments whose HTML changed. The browser side is one small
// hand-written script (assets/app.js) that swaps them in; no build step.
//
// What the dashboard shows of usage and logs comes from small interfaces
// (UsageSource, LogSource); a control node sets them to the agents'
// NodeMetrics and to InProcess.Logs, the API server's own PodStreams relay
// called as the session's user; see Config.
package dashboard
