#!/usr/bin/env bash
# Build .devkit/: what the GPU machine lent through the `device` tool lacks to run medverse's benchmarks.
#
# That machine (see bench/device/README.md) runs an image with Python 3.12, numpy, scipy, pillow, aiohttp,
# pandas and scikit-learn, but reaches no package registry, and only 64 MiB travel with the working tree.
# So this script, run here (where PyPI and Debian are reachable), downloads the cp312 wheels of the
# packages the benchmarks import and the image lacks, unpacks them into one folder and packs it with xz
# (about 38 MB, against 62 MB of wheels), and fetches the glvnd EGL/GL libraries the image does not have.
#
#     bash bench/device/kit.sh            # then: the device tool's `run` with carry [".devkit"]
#
# Versions are the ones this project's .venv is tested with; change them together with pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
kit=.devkit
python=${PYTHON:-.venv/bin/python}
packages=(
    # rendering and picking
    PyOpenGL==3.1.10 embreex==4.4.0.post1
    # the bundled brain twin (its fsaverage5 surfaces ship in nilearn) and the mesh loaders
    nilearn==0.14.1 nibabel==5.4.2 trimesh==5.2.0
    # WebRTC: aiortc and what it imports (av at import time, although no media is sent)
    aiortc==1.16.0 aioice==0.13.0 av==18.1.0 pylibsrtp==1.0.0 pyee==13.0.1 google-crc32c==1.9.0
    cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 pyOpenSSL==26.4.0 dnspython==2.9.2 ifaddr==0.2.0
)
# and meshoptimizer==0.2.30a0, built below
platforms=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_26_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_34_x86_64; do
    platforms+=(--platform "$p")
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$work/wheels" "${packages[@]}"
# meshoptimizer (level-of-detail building) is published as source only: build its cp312 wheel with a local
# Python 3.12 (PY312, else python3.12 on PATH, else pyenv's)
py312=
for candidate in ${PY312:-} python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
        py312=$candidate; break
    fi
done
if [ -z "$py312" ]; then
    echo "kit.sh: no Python 3.12 here to build meshoptimizer's wheel: set PY312 (e.g. after 'pyenv install 3.12')"; exit 2
fi
"$py312" -m venv "$work/py312"
"$work/py312/bin/python" -m pip wheel --quiet --no-deps -w "$work/wheels" "meshoptimizer==0.2.30a0"
mkdir -p "$work/site"
for wheel in "$work"/wheels/*.whl; do
    "$python" -m zipfile -e "$wheel" "$work/site"
done
rm -rf "$kit" && mkdir -p "$kit/gl"
tar -C "$work/site" -cf - . | xz -T0 -6 >"$kit/site.tar.xz"
# glvnd's loaders (libEGL.so.1, libOpenGL.so.0, libGL.so.1); the NVIDIA driver's own EGL library is
# mounted on that machine. Downloaded for amd64 whatever this machine's architecture.
apt_state="$work/apt"
mkdir -p "$apt_state/lists/partial"
apt_opts=(-o APT::Sandbox::User=root -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o "Dir::State::Lists=$apt_state/lists")
apt-get "${apt_opts[@]}" -qq update
(cd "$kit/gl" && apt-get "${apt_opts[@]}" -qq download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh "$kit" "$kit"/site.tar.xz "$kit"/gl
