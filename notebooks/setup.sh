#!/usr/bin/env bash
# Installs what the notebooks need, idempotently, inside this checkout's target/ (nothing global):
# - the evcxr Jupyter kernel for Rust, pinned, from crates.io, into target/notebooks-tools/bin.
#   It is built unoptimized (`--debug`, no debug info): the kernel's own code hardly runs (it hands
#   each cell to cargo and rustc, which are optimized), and an unoptimized build of its ~270 crates
#   takes about 9 minutes on 2 cores instead of more than 44 for the release profile;
# - a Python venv with Jupyter and nbclient (pinned, from PyPI) under target/notebooks-venv, with the
#   kernel's `rust` kernelspec written into the venv (where its Jupyter finds it).
# Then: `target/notebooks-venv/bin/python notebooks/run.py` executes them all, `... run.py --lab` opens them.
set -euo pipefail
cd "$(dirname "$0")/.."

EVCXR_VERSION=0.22.0
TOOLS=target/notebooks-tools
VENV=target/notebooks-venv

# (evcxr_jupyter has no --version: ask cargo what it installed under $TOOLS.)
if ! cargo install --list --root "$TOOLS" | grep -x "evcxr_jupyter v$EVCXR_VERSION:" >/dev/null; then
    # --debug: the dev profile, which notebooks/evcxr-profile.toml trims (no debug info) and raises
    # to opt-level 1 for the rust-analyzer crates that run at every kernel start (see that file).
    echo "notebooks/setup.sh: cargo install --locked --debug --config notebooks/evcxr-profile.toml evcxr_jupyter@$EVCXR_VERSION --root $TOOLS" >&2
    cargo install --locked --debug --config notebooks/evcxr-profile.toml "evcxr_jupyter@$EVCXR_VERSION" --root "$TOOLS"
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null; then
    echo "notebooks/setup.sh: python3 -m venv $VENV; pip install -r notebooks/requirements.txt" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
fi
# The `rust` kernelspec (it names the kernel binary by its absolute path) goes into the venv's own
# data dir, which its Jupyter searches: nothing is written to the user's ~/.local/share/jupyter.
JUPYTER_PATH="$VENV/share/jupyter" "$TOOLS/bin/evcxr_jupyter" --install >/dev/null
