// Package pki is Skiff's cluster public-key infrastructure. It owns
//
//   - the cluster CA (ECDSA P-256): create, load and save in a data dir;
//   - identities carried in certificate subjects (CN = identity,
//     O = role group, the Kubernetes convention) and IdentityFromCert;
//   - issuing certificates from CSRs with a lifetime and SANs;
//   - join tokens (skiff1.<pin>.<id>.<secret>) and their registry, kept
//     through the small TokenStore interface so it can live in the
//     replicated store;
//   - the join handshake (skiff.join.v1): the server side, the client that
//     checks the CA pin before it sends any secret, and the listener split
//     that lets callers without a certificate reach only that service;
//   - automatic certificate renewal (Renewer);
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
