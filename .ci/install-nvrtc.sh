#!/usr/bin/env bash
# Installs NVIDIA's runtime compiler NVRTC from its pinned PyPI wheel into .ci/nvrtc (about 90 MB,
# once) and prints the folder that holds libnvrtc.so.13, for LD_LIBRARY_PATH. With it CI compiles
# every kernel of kernels/ with no GPU, driver or CUDA toolkit:
#
#   LD_LIBRARY_PATH=$(.ci/install-nvrtc.sh) GPT_REQUIRE_NVRTC=1 cargo test --test kernels_compile
#
# Pinned to 13.0.x: a 13.0 driver (the GPU machine's) refuses PTX from a newer NVRTC (DESIGN.md).
# The kernels include no CUDA headers, so nvidia-cuda-runtime (the headers) is not needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="$here/nvrtc"
lib="$target/nvidia/cu13/lib"
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$target" \
        nvidia-cuda-nvrtc==13.0.88 >&2
fi
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    echo "install-nvrtc: libnvrtc.so.13 is not in $lib after installing nvidia-cuda-nvrtc==13.0.88" >&2
    exit 1
fi
echo "$lib"
