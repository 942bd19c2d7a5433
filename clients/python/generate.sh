#!/bin/sh
# Regenerates the Python code of skiff.api.v1 into skiff/api/v1 (committed,
# so the client works from a checkout without protoc). `make proto` runs it.
# Needs Debian's protobuf-compiler and protobuf-compiler-grpc (`make deps`):
# the same protoc as the Go code, and the gRPC plugin matching python3-grpcio.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/skiff/api/v1"
plugin=$(command -v grpc_python_plugin) || { echo "grpc_python_plugin not found: apt-get install protobuf-compiler-grpc" >&2; exit 1; }
rm -f "$out"/*_pb2.py "$out"/*_pb2_grpc.py
cd "$here/../../proto"
protoc -I . --python_out="$here/skiff" api/v1/*.proto
protoc -I . --plugin=protoc-gen-grpc_python="$plugin" --grpc_python_out="$here/skiff" api/v1/api_service.proto
# protoc names imports after the proto path (api.v1); the package lives
# under skiff, so that no top-level "api" module is claimed.
sed -i 's/^from api\.v1 import/from skiff.api.v1 import/' "$out"/*.py
