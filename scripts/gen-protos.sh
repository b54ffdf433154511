#!/usr/bin/env bash
# Regenerate hermetic/_protos/*_pb2*.py from the .proto files (needs
# grpcio-tools at the version pinned in pyproject.toml's "dev" extra).
set -euo pipefail
cd "$(dirname "$0")/../hermetic/_protos"
python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. remote_cache.proto bytestream.proto
# generated modules import each other as top-level modules: make them relative
sed -i -E 's/^import (remote_cache|bytestream)_pb2 as/from . import \1_pb2 as/' ./*_pb2_grpc.py
