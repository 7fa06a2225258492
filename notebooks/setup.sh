#!/usr/bin/env bash
# Installs what the notebooks need, once per machine, into a cache outside the checkout (nothing
# global, nothing in the clone), so that a fresh clone (CI's, every run) finds it already there:
#   ${XDG_CACHE_HOME:-~/.cache}/gpt2-notebooks/tools-evcxr-<version>-<key>/
# where <key> is a hash of what the install depends on: notebooks/requirements.txt,
# notebooks/evcxr-profile.toml, the evcxr version and python3's version. Change any of them and the
# next run installs into a new folder (the old one stays until removed by hand). In it:
# - bin/evcxr_jupyter: the evcxr Jupyter kernel for Rust, pinned, from crates.io. It is built
#   unoptimized (`--debug`, no debug info): the kernel's own code hardly runs (it hands each cell to
#   cargo and rustc, which are optimized), and an unoptimized build of its ~270 crates takes about
#   9 minutes on 2 cores instead of more than 44 for the release profile;
# - venv/: a Python venv with Jupyter and nbclient (pinned, from PyPI), with the kernel's `rust`
#   kernelspec written into it (where its Jupyter finds it).
# Then `notebooks/run.py` executes them all (it asks this script where the cache is and runs itself
# with the venv's Python), `notebooks/run.py --lab` opens them.
#
#   notebooks/setup.sh              install what is missing, then print the folder
#   notebooks/setup.sh --dry-run    say what is there and what would be installed; install nothing
#   notebooks/setup.sh --print-dir  print the folder only
set -euo pipefail
cd "$(dirname "$0")/.."

EVCXR_VERSION=0.22.0
mode="${1:-install}"
case "$mode" in
    install | --dry-run | --print-dir) ;;
    *) echo "notebooks/setup.sh: unknown argument '$mode' (--dry-run, --print-dir or nothing)" >&2; exit 2 ;;
esac

key="$( { echo "evcxr_jupyter $EVCXR_VERSION"; python3 --version; cat notebooks/requirements.txt notebooks/evcxr-profile.toml; } \
    | sha256sum | cut -c1-12)"
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/gpt2-notebooks/tools-evcxr-$EVCXR_VERSION-$key"
if [ "$mode" = --print-dir ]; then
    echo "$DIR"
    exit 0
fi
TOOLS="$DIR"
VENV="$DIR/venv"

have_evcxr() {
    # (evcxr_jupyter has no --version: ask cargo what it installed under $TOOLS.)
    [ -d "$TOOLS" ] && cargo install --list --root "$TOOLS" 2>/dev/null | grep -x "evcxr_jupyter v$EVCXR_VERSION:" >/dev/null
}
have_venv() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null
}

if [ "$mode" = --dry-run ]; then
    echo "notebooks/setup.sh: the tools' folder is $DIR"
    if have_evcxr; then echo "evcxr_jupyter $EVCXR_VERSION: there, reused"; else echo "evcxr_jupyter $EVCXR_VERSION: missing, would be installed (cargo install, about 9 minutes on 2 cores)"; fi
    if have_venv; then echo "Jupyter venv: there, reused"; else echo "Jupyter venv: missing, would be made (pip install -r notebooks/requirements.txt)"; fi
    exit 0
fi

mkdir -p "$DIR"
# One install at a time per folder: a second clone's setup waits here, then finds it all there.
exec 9>"$DIR.lock"
flock 9

if ! have_evcxr; then
    # --debug: the dev profile, which notebooks/evcxr-profile.toml trims (no debug info) and raises
    # to opt-level 1 for the rust-analyzer crates that run at every kernel start (see that file).
    echo "notebooks/setup.sh: cargo install --locked --debug --config notebooks/evcxr-profile.toml evcxr_jupyter@$EVCXR_VERSION --root $TOOLS" >&2
    cargo install --locked --debug --config notebooks/evcxr-profile.toml "evcxr_jupyter@$EVCXR_VERSION" --root "$TOOLS"
fi

if ! have_venv; then
    echo "notebooks/setup.sh: python3 -m venv $VENV; pip install -r notebooks/requirements.txt" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
fi
# The `rust` kernelspec (it names the kernel binary by its absolute path) goes into the venv's own
# data dir, which its Jupyter searches: nothing is written to the user's ~/.local/share/jupyter.
JUPYTER_PATH="$VENV/share/jupyter" "$TOOLS/bin/evcxr_jupyter" --install >/dev/null
echo "$DIR"
