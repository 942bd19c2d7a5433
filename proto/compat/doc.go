// Package compat keeps the published gRPC API wire compatible. The
// descriptor sets beside it (api-v1.binpb for skiff.api.v1, admin-v1.binpb
// for skiff.admin.v1) are the API as last published, made by protoc
// --descriptor_set_out --include_imports (`make api-baseline`). Its test
// compares the descriptors compiled into this tree against them and fails
// on any change that breaks a client built from the published .proto
// files: a message, field, enum value, service or method removed, a field
// renumbered, renamed or retyped, a method's request, response or streaming
// changed. Additions are free. Refresh the baseline only when a release
// publishes the new API.
//
// A second test checks that the generated reference (docs/api) names every
// message, field, enum, service and method compiled into the tree, i.e.
// that `make proto` ran after the last .proto change.
package compat
