// Package kinds is the registry of API kinds: every kind (Pod, Deployment,
// Service …) is defined once here with its names (plural, short names),
// accepted apiVersions, scope, storage key, defaults, validation, printer
// columns and Hooks (its behaviour in the API server's generic store path
// and in ctl: prepare on create/update, graceful delete, pod spec or
// template, replicas, quota usage). Nothing else in Skiff switches over
// kinds: the API server, the manifest codec and the CLI look kinds up in a
// Registry and call the hooks.
//
// It also owns the field-error type validation returns; the Quantity parser
// (500m, 0.5, 128Mi, 1G → millicores / bytes) lives in proto/api/v1 and is
// aliased here.
package kinds
