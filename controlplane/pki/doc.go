// Package pki is Skiff's cluster public-key infrastructure. It owns
//
//   - the cluster CA (ECDSA P-256): create, load and save in a data dir;
//   - identities carried in certificate subjects (CN = identity,
//     O = role group, the Kubernetes convention) and IdentityFromCert;
//   - issuing certificates from CSRs with a lifetime and SANs;
//   - join tokens (skiff1.<pin>.<id>.<secret>) and their registry, kept
//     through the small TokenStore interface so it can live in the
//     replicated store; a worker token may be bound to one node name;
//   - the join handshake (skiff.join.v1): the server side, the client that
//     checks the CA pin before it sends any secret, and the listener split
//     that lets callers without a certificate reach only that service.
//     The server signs only what the role may have: control certificates
//     serve (server + client authentication, their names); worker
//     certificates are client-only and name at most the advertise IP the
//     join came from. An unknown token id and a wrong secret get one
//     answer, and failed joins are slowed per remote address
//     (failureLimiter, ratelimit.go);
//   - renewal with the current certificate (RenewCertificate) for nodes,
//     control nodes and users, and automatic renewal of node certificates
//     (Renewer);
//   - the CA bundle (Bundle: the signer and the trusted set), whose TLS
//     configs (ServerConfig, ClientConfig) read the set in force at each
//     handshake, so that a CA rotation changes trust without a restart;
//   - revocation: the deny list (by identity and issue time) checked at
//     TLS handshakes, and GuardedListener, which cuts open connections
//     whose certificate a changed rule now refuses.
//
// Files written here hold PEM; private keys are written 0600.
//
// Wiring (control node):
//
//	ca, _, _ := pki.LoadOrCreateCA(dataDir+"/pki", pki.DefaultCAConfig())   // init; join: save JoinResult
//	src := renewer (or pki.StaticCert{cert})
//	split, _ := pki.NewSplitListener(lis, pki.ServerTLSConfig(ca.Pool(), src, tls.VerifyClientCertIfGiven), log)
//	anon := grpc.NewServer(grpc.Creds(pki.HandshakenTLS()))             // join service ONLY
//	joinv1.RegisterJoinServer(anon, joinServer)
//	authed := grpc.NewServer(append(apiServer.ServerOptions(), grpc.Creds(pki.HandshakenTLS()))...)
//	apiServer.Register(authed); joinv1.RegisterJoinServer(authed, joinServer)
//	go anon.Serve(split.Anonymous()); go authed.Serve(split.Authenticated())
//
// Ports where every caller has a certificate (Raft, agent) use
// ServerTLSConfig(..., tls.RequireAndVerifyClientCert) directly.
package pki
