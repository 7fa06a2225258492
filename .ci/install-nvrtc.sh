#!/usr/bin/env bash
# Installs NVIDIA's runtime compiler NVRTC from its pinned PyPI wheel into a Python virtual
# environment, .ci/nvrtc/venv (about 90 MB, once), as a user would with `pip install`. With it CI
# compiles every kernel of kernels/ with no GPU, driver or CUDA toolkit, and src/cuda/libs.rs finds
# the library in the venv's site-packages (nvidia/cu13/lib) when that venv's python3 comes first on
# PATH, as in an activated venv; no LD_LIBRARY_PATH:
#
#   PATH="$(dirname "$(.ci/install-nvrtc.sh --python)"):$PATH" GPT_REQUIRE_NVRTC=1 cargo test --release --test kernels_compile
#
# Prints the folder that holds libnvrtc.so.13 (for LD_LIBRARY_PATH, if wanted), or with --python the
# venv's python3.
# Pinned to 13.0.x: a 13.0 driver (the GPU machine's) refuses PTX from a newer NVRTC (DESIGN.md);
# we load cubins, not PTX, but keep the compiler the driver's version.
# The kernels include no CUDA headers, so nvidia-cuda-runtime (the headers) is not needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/nvrtc/venv"
if [ ! -x "$venv/bin/python3" ]; then
    python3 -m venv "$venv" >&2
fi
site="$("$venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
lib="$site/nvidia/cu13/lib"
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check --no-deps nvidia-cuda-nvrtc==13.0.88 >&2
fi
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    echo "install-nvrtc: libnvrtc.so.13 is not in $lib after installing nvidia-cuda-nvrtc==13.0.88" >&2
    exit 1
fi
if [ "${1:-}" = "--python" ]; then
    echo "$venv/bin/python3"
else
    echo "$lib"
fi
