#!/usr/bin/env bash
# Installs what the notebooks need, idempotently: the evcxr Jupyter kernel for Rust (pinned, from
# crates.io, built with this toolchain: more than 40 minutes on 2 shared cores the first time, nothing after)
# and a Python venv with Jupyter and nbclient (pinned, from PyPI) under target/notebooks-venv.
# Then: `target/notebooks-venv/bin/jupyter lab notebooks/`, or `notebooks/run.py` to execute them all.
set -euo pipefail
cd "$(dirname "$0")/.."

EVCXR_VERSION=0.22.0
VENV=target/notebooks-venv

# (evcxr_jupyter has no --version: ask cargo what it installed.)
if ! cargo install --list | grep -x "evcxr_jupyter v$EVCXR_VERSION:" >/dev/null; then
    echo "notebooks/setup.sh: cargo install --locked evcxr_jupyter@$EVCXR_VERSION" >&2
    cargo install --locked "evcxr_jupyter@$EVCXR_VERSION"
fi
# Writes the `rust` kernelspec into the user's Jupyter data dir (where the venv's Jupyter finds it).
evcxr_jupyter --install >/dev/null

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
fi
