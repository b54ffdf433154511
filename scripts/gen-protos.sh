#!/usr/bin/env bash
# Regenerate hermetic/_protos/*_pb2*.py from the .proto files (needs
# grpcio-tools at the version pinned in pyproject.toml's "dev" extra).
set -euo pipefail
cd "$(dirname "$0")/../hermetic/_protos"
protos=(remote_cache.proto bytestream.proto operations.proto status.proto bots.proto)
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. "${protos[@]}"
# generated modules import each other as top-level modules: make them relative
sed -i -E 's/^import (remote_cache|bytestream|operations|status|bots)_pb2 as/from . import \1_pb2 as/' ./*_pb2.py ./*_pb2.pyi ./*_pb2_grpc.py
