// Package explain documents the API's kinds field by field for
// `ctl explain`, from the comments in proto/api/v1's .proto files: `make
// proto` writes their descriptors with source info to api-v1.binpb, which
// is embedded here (Go's generated descriptors carry no comments). The
// field structure comes from the compiled-in descriptors, so a field
// without a comment is still listed.
package explain
