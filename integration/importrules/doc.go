// Package importrules states the dependency rules of docs/architecture.md
// as code and checks them against the module's import graph (its test runs
// `go list`). The rules, for production packages — every package except
// those under integration/ and test kits named *test:
//
//   - proto/ imports nothing of ours outside proto/;
//   - consensus/ knows no API: of ours it imports consensus/ and proto/,
//     but not proto/api/ or proto/client;
//   - agent/ and netproxy/ import only their own tree and proto/ (they
//     talk to the control plane through proto/client);
//   - controlplane/ imports only controlplane/, consensus/ and proto/;
//   - no production package imports integration/ or a *test package, so
//     no test kit is linked into ctl.
package importrules
