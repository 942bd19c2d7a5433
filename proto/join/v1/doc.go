// Package joinv1 is the join handshake service (package skiff.join.v1),
// generated from join.proto beside it: fetching the cluster CA without a
// client certificate, exchanging a join token and a CSR for a certificate,
// and renewing certificates. The logic lives in controlplane/pki.
package joinv1
