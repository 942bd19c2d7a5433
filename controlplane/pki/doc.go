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
//   - automatic certificate renewal (Renewer).
//
// Files written here hold PEM; private keys are written 0600.
package pki
