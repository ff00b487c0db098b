#!/usr/bin/env bash
# The GPU figures in one call of the device tool: bench/device/README.md says how and why.
#
#     run(command="bash bench/device/run.sh", carry=[".devkit"], timeout_s=600)
#
# On that machine: unpacks .devkit (bench/device/kit.sh made it here), checks that the renderer gets the
# NVIDIA GPU (and stops in one line if it gets a software rasteriser), then runs, each under its own time
# limit and only while the whole run stays inside BUDGET_S:
#   1. bench/interaction.py          frame time full/bare (issue 13's goal: <= 1.10) at 720x800 per eye
#   2. bench/consult.py --renderers 1 --rate 90 --delays 0 --frame-nice 0
#                                    motion-to-display of one renderer at 90 Hz (issue 15's: p99 < 16.1 ms)
#   3. bench/consult.py --renderers 4 --rate 90
#                                    the issue's room of four renderers, on loopback and with 22.5 ms
#   4. bench/render.py --skip-pyrender
#                                    the renderer against the bare floor loop, brain and 1M twins
# and copies each JSON report and the whole log to $OUT (at most 8 files come back).
# Locally (a rehearsal: PYTHON=a Python 3.12 with numpy, scipy, pillow, aiohttp, pandas, scikit-learn;
# ALLOW_SOFTWARE=1 to go on with llvmpipe): OUT=/tmp/out PYTHON=... bash bench/device/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/bench/results/device}
BUDGET_S=${BUDGET_S:-540}
python=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
began=$SECONDS

if [ ! -f .devkit/site.tar.xz ]; then
    echo "run.sh: no .devkit/site.tar.xz: run bench/device/kit.sh here first and carry .devkit"; exit 2
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    echo "run.sh: $python is $("$python" -V 2>&1); the kit holds Python 3.12 wheels"; exit 2
fi
# glvnd's EGL/GL loaders, unless the machine has them (then its own stay)
if ! ldconfig -p | grep -q 'libEGL.so.1 '; then
    for deb in .devkit/gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -f "$vendor" ] && [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
fi
site=${KIT_SITE:-/tmp/medverse-kit}
if [ ! -f "$site/.unpacked" ]; then
    rm -rf "$site" && mkdir -p "$site"
    # Python's own lzma and tarfile: no xz program needed there
    "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
        .devkit/site.tar.xz "$site" && touch "$site/.unpacked"
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export MEDVERSE_HOME=/tmp/medverse-home MEDVERSE_CACHE=/tmp/medverse-cache
# bench/consult.py starts `medverse` from beside the interpreter; there is none in the image's venv
bin=/tmp/medverse-bin
mkdir -p "$bin"
# (guarded: a join's network process is started with multiprocessing's spawn, which imports this file again)
printf '#!%s\nimport sys\n\nfrom sessions.cli import main\n\nif __name__ == "__main__":\n    sys.exit(main())\n' \
    "$(command -v "$python")" >"$bin/medverse"
chmod +x "$bin/medverse"
export PATH="$bin:$PATH"

echo "== machine: $(nproc) cores; $(nvidia-smi -L 2>/dev/null || echo 'no nvidia-smi'); $("$python" -V)"
renderer=$("$python" - <<'PY'
from xrcore.gl.context import create_context
ctx = create_context("egl", width=64, height=64)
print(f"{ctx.info['renderer']} | OpenGL {ctx.info['version']} | EGL {ctx.info.get('platform')}")
ctx.close()
PY
) || { echo "run.sh: no GL context (above)"; exit 2; }
echo "== GL: $renderer"
case "$renderer" in
    *llvmpipe*|*softpipe*|*SwiftShader*)
        if [ -z "${ALLOW_SOFTWARE:-}" ]; then echo "run.sh: a software rasteriser, not the GPU: stopping"; exit 2; fi ;;
esac

step() {  # step NAME LIMIT_S OUTPUT_JSON -- COMMAND...: run it if the budget allows, copy its report
    local name=$1 limit=$2 report=$3
    shift 4
    local left=$((BUDGET_S - (SECONDS - began)))
    if [ "$left" -lt 30 ]; then echo "== $name: skipped, ${left} s left of the budget"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || failed+=("$name")
    [ -f "$report" ] && cp "$report" "$OUT/$name.json"
}

results=bench/results
mkdir -p "$results"
failed=()
# QUICK=1: a rehearsal that only checks every step runs (small sizes, short rooms)
quick_interaction=() quick_consult=() quick_render=()
if [ -n "${QUICK:-}" ]; then
    quick_interaction=(--quick --width 320 --height 320)
    quick_consult=(--duration 4 --warmup 4)
    quick_render=(--frames 2 --frames-1m 1 --width 320 --height 320 --skip-rss)
fi
step interaction 200 "$results/interaction.json" -- "$python" bench/interaction.py "${quick_interaction[@]}"
step consult-1x90 120 "$results/consult-1x90.json" -- "$python" bench/consult.py --renderers 1 --rate 90 \
    --delays 0 --duration 15 --frame-nice 0 "${quick_consult[@]}" --out "$results/consult-1x90.json"
step consult-4x90 200 "$results/consult-4x90.json" -- "$python" bench/consult.py --renderers 4 --rate 90 \
    "${quick_consult[@]}" --out "$results/consult-4x90.json"
step render 150 "$results/render.json" -- "$python" bench/render.py --skip-pyrender "${quick_render[@]}"
echo "== done in $((SECONDS - began)) s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
if [ "${#failed[@]}" -gt 0 ]; then echo "== failed: ${failed[*]}"; exit 1; fi
