#!/usr/bin/env bash
# Everything a fresh Debian machine needs: system packages (bubblewrap, gcc,
# perl, make, gpgv, Python headers and venv, Debian's deb-src for the pinned
# OpenSSL tarball), then hermetic itself in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
# Debian's own python3 by default: the interpreter is part of the python
# toolchain's identity (so of every wheel's cache key), it is the same on every
# teammate's Debian machine, and every user can run it.
PY=${PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,verify]'

# BuildGrid (a REAPI server) for the remote-cache and remote-execution tests,
# in its own venv: its pinned dependencies are not hermetic's. 0.4.4 is the
# newest for Python 3.11; [database] brings the PostgreSQL driver its
# scheduler needs.
if ! .venv-buildgrid/bin/python -c "import buildgrid, psycopg2" 2>/dev/null; then
  [ -x .venv-buildgrid/bin/python ] || "$PY" -m venv .venv-buildgrid
  .venv-buildgrid/bin/python -m pip install -q --disable-pip-version-check "buildgrid[database]==0.4.4"
fi
