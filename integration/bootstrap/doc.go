// Package bootstrap tests cluster bootstrap and security end to end with
// the real ctl binary (built by the tests): `ctl init`, `ctl join` of
// control nodes and workers, leader loss and restart, quorum loss and
// `ctl recover`, snapshot save/restore, and every refusal the security
// model promises (no certificate, foreign CA, wrong pin, expired and
// revoked tokens, viewer writes, node restriction), and the Python client
// (clients/python) against three control nodes. Processes run on
// 127.0.0.1 with ports the OS chose free.
package bootstrap
