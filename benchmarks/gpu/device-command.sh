#!/usr/bin/env bash
# The whole device run: `bash benchmarks/gpu/device-command.sh`, with carry [".gpu-bundle", ".gl"]
# (build them with benchmarks/gpu/make-bundle.sh). Works on a bare GPU machine (no Node, maybe
# no Vulkan loader) and, as a local test, on a CPU machine with lavapipe.
#
#   GPU_BENCH_MODE=small          lavapipe-sized run (local test)
#   GPU_BENCH_TIMEOUT_S=360       hard limit for the benchmark process (default 360)
#   GPU_BENCH_BUDGET_S=240        soft budget inside the runner (later sections are skipped)
#   GPU_BENCH_RT=/tmp/gpu-rt      where the runtime is unpacked
# packages/{tensor,webgpu,transformer}/dist, when present (carried), replace the bundled copies.
# Every other GPU_BENCH_* variable goes to benchmarks/gpu/run-gpu-bench.mjs.
# Writes $OUT/gpu-bench.json, gpu-bench-log.txt, env-log.txt and runtime-log.txt (OUT unset: /tmp/gpu-bench-out).
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
REPO=$PWD
OUTDIR=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUTDIR"
RT=${GPU_BENCH_RT:-/tmp/gpu-rt}
LIMIT=${GPU_BENCH_TIMEOUT_S:-360}
step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

setup_env() {
step "machine"
uname -srm; grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null; nproc
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi -L && timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader

step "vulkan loader"
if ldconfig -p | grep -q 'libvulkan\.so\.1' && ldconfig -p | grep -q 'libGLdispatch\.so\.0'; then
  echo "loader present: $(ldconfig -p | grep -m1 'libvulkan\.so\.1')"
elif ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" / || echo "dpkg -x $f failed"; done
  ldconfig
  echo "unpacked .gl: $(ldconfig -p | grep -c 'libvulkan\.so\.1') libvulkan.so.1 entries"
else
  echo "WARNING: no Vulkan loader and no .gl/*.deb (carry .gl)"
fi

step "vulkan ICD"
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
echo "ICDs in the standard places: ${icds:-none}"
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && ! echo "$icds" | grep -qi nvidia && [ -f "$NV_ICD" ]; then
  export VK_DRIVER_FILES=$NV_ICD
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
[ -n "${VK_DRIVER_FILES:-}" ] && cat "$VK_DRIVER_FILES"
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d ;; esac
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-unset}"
if command -v vulkaninfo >/dev/null; then timeout 30 vulkaninfo --summary 2>&1 | sed -n '/^Devices:/,$p' | head -40; else echo "(no vulkaninfo)"; fi
}

setup_runtime() {
step "unpacking the runtime into $RT"
[ -f .gpu-bundle/runtime.tar.xz ] || { echo "FATAL: .gpu-bundle/runtime.tar.xz missing (run benchmarks/gpu/make-bundle.sh; carry .gpu-bundle)"; return 3; }
rm -rf "$RT" && mkdir -p "$RT"
if command -v xz >/dev/null; then
  tar -xJf .gpu-bundle/runtime.tar.xz -C "$RT"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu-bundle/runtime.tar.xz "$RT"
fi || { echo "FATAL: could not unpack the runtime"; return 3; }
cat .gpu-bundle/MANIFEST.txt 2>/dev/null | head -3
"$RT/bin/node" --version || { echo "FATAL: bundled node does not run"; return 3; }
# Compiled packages carried beside the bundle (carry packages/<name>/dist after `npx tsc -b
# packages/cli packages/webgpu`) replace the bundle's copies, so a code change needs no re-pack.
for name in tensor webgpu transformer; do
  d=$RT/node_modules/@softgrad/$name
  if [ -f "packages/$name/dist/index.js" ]; then
    rm -rf "$d/dist" && cp -r "packages/$name/dist" "$d/dist" && cp "packages/$name/package.json" "$d/"
    src="working tree packages/$name/dist"
  else
    src="bundle"
  fi
  echo "@softgrad/$name from $src, js sha256 $(cd "$d/dist" && find . -name '*.js' | sort | xargs cat | sha256sum | cut -c1-12)"
done
# dawn.node wants GLIBCXX_3.4.30 (GCC 12's libstdc++); use the bundled one only if needed.
if ! "$RT/bin/node" -e "require('$RT/node_modules/webgpu/dist/linux-x64/dawn.node')" 2>/tmp/dawn-load.err; then
  cat /tmp/dawn-load.err | head -5
  echo "dawn.node did not load with the system libraries: retrying with the bundled libstdc++"
  export LD_LIBRARY_PATH=$RT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  "$RT/bin/node" -e "require('$RT/node_modules/webgpu/dist/linux-x64/dawn.node')" || echo "dawn.node still does not load"
fi
}

# Functions run in this shell (so their exports hold); their output is logged, then shown.
setup_env >"$OUTDIR/env-log.txt" 2>&1
cat "$OUTDIR/env-log.txt"
setup_runtime >"$OUTDIR/runtime-log.txt" 2>&1
src=$?
cat "$OUTDIR/runtime-log.txt"
[ "$src" -eq 0 ] || exit 3

export PATH=$RT/bin:$PATH
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# The runner travels with the working tree (so it can change without rebuilding the bundle);
# run it from inside the runtime so its bare imports resolve to the bundled node_modules.
cp benchmarks/gpu/run-gpu-bench.mjs "$RT/run-gpu-bench.mjs"
cd "$RT"
step "benchmark (limit ${LIMIT}s, node = $(command -v node))"
OUT=$OUTDIR timeout -k 10 "$LIMIT" node run-gpu-bench.mjs 2>&1 | grep --line-buffered -v 'artificially reduced' | tee "$OUTDIR/gpu-bench-log.txt"
rc=${PIPESTATUS[0]}
step "benchmark exit code $rc"

if [ "$rc" -eq 2 ]; then
  step "no adapter: Vulkan loader diagnostics"
  VK_LOADER_DEBUG=error,warn,driver timeout 60 node -e "
    const { create, globals } = require('$RT/node_modules/webgpu/dist/linux-x64/dawn.node');
    const g = create([]); globalThis.__keep = g;
    g.requestAdapter().then((a) => console.log('adapter', a && JSON.stringify(a.info)));
  " 2>&1 | head -80
fi
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv,noheader
step "done (total $(( $(date +%s) - T0 ))s)"
exit "$rc"
