#!/usr/bin/env bash
# Checks notebooks/setup.sh's cache logic without installing anything (the real install takes about
# 20 minutes), in a scratch XDG_CACHE_HOME: the folder is under it and keyed by the pins; --dry-run
# and --print-dir create nothing; a folder holding the tools (faked: cargo's record of evcxr_jupyter,
# a stand-in binary, a venv with stand-in modules) is reused, not installed over; run.py runs itself
# with that venv's Python; a changed pin names another folder. .ci/run runs it before setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export XDG_CACHE_HOME="$scratch/cache"
fail() { echo "notebooks/test_setup.sh: $*" >&2; exit 1; }

dir="$(notebooks/setup.sh --print-dir)"
case "$dir" in
    "$XDG_CACHE_HOME"/gpt2-notebooks/tools-evcxr-0.22.0-????????????) ;;
    *) fail "--print-dir gave '$dir', not a folder under $XDG_CACHE_HOME/gpt2-notebooks keyed by the pins" ;;
esac
out="$(notebooks/setup.sh --dry-run)"
grep -q "evcxr_jupyter 0.22.0: missing, would be installed" <<<"$out" || fail "--dry-run on nothing: $out"
grep -q "Jupyter venv: missing, would be made" <<<"$out" || fail "--dry-run on nothing: $out"
[ ! -e "$dir" ] || fail "--dry-run or --print-dir created $dir"

# the tools, faked: what setup.sh asks (cargo install --list, the venv's imports) says they are there
mkdir -p "$dir/bin"
printf '[v1]\n"evcxr_jupyter 0.22.0 (registry+https://github.com/rust-lang/crates.io-index)" = ["evcxr_jupyter"]\n' \
    >"$dir/.crates.toml"
printf '#!/bin/sh\necho "$@" >>"%s/evcxr_calls"\n' "$scratch" >"$dir/bin/evcxr_jupyter"
chmod +x "$dir/bin/evcxr_jupyter"
python3 -m venv --without-pip "$dir/venv"
site="$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for m in nbformat nbclient ipykernel; do mkdir -p "$site/$m"; done
printf 'import sys\nopen("%s/ran_in", "w").write(sys.prefix)\n' "$scratch" >"$site/nbformat/__init__.py"
echo 'NotebookClient = object' >"$site/nbclient/__init__.py"
echo 'CellExecutionComplete = Exception' >"$site/nbclient/exceptions.py"
echo 'ensure_async = None' >"$site/nbclient/util.py"

out="$(notebooks/setup.sh --dry-run)"
grep -q "evcxr_jupyter 0.22.0: there, reused" <<<"$out" && grep -q "Jupyter venv: there, reused" <<<"$out" \
    || fail "--dry-run does not see the tools in $dir: $out"
[ "$(notebooks/setup.sh)" = "$dir" ] || fail "setup.sh did not end by printing $dir"
grep -qx -- "--install" "$scratch/evcxr_calls" || fail "setup.sh did not write the kernelspec with the cached evcxr_jupyter"
python3 notebooks/run.py --help >/dev/null || fail "run.py --help failed"
[ "$(cat "$scratch/ran_in")" = "$dir/venv" ] || fail "run.py did not run in $dir/venv"

# another pin, another folder
mkdir -p "$scratch/clone/notebooks"
cp notebooks/setup.sh notebooks/requirements.txt notebooks/evcxr-profile.toml "$scratch/clone/notebooks/"
echo "# another pin" >>"$scratch/clone/notebooks/requirements.txt"
[ "$("$scratch/clone/notebooks/setup.sh" --print-dir)" != "$dir" ] || fail "a changed requirements.txt names the same folder"
echo "notebooks/test_setup.sh: the tools' cache is keyed by the pins, found, reused and used by run.py ($dir)"
