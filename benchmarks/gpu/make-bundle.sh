#!/usr/bin/env bash
# Builds .gpu-bundle/ (ignored through .git/info/exclude, never committed): everything the
# WebGPU benchmarks need at run time on a machine that has neither Node nor node_modules,
# packed small enough to travel with the working tree to the lent GPU machine (64 MiB limit).
#
#   .gpu-bundle/runtime.tar.xz   bin/node (this machine's Node ≥ 20, stripped),
#                                node_modules/{webgpu (linux-x64 dawn.node only), @tensorflow/
#                                tfjs-core + tfjs-backend-webgpu (their Node bundles only) and
#                                runtime deps, @huggingface/tokenizers, @softgrad/{tensor,webgpu,
#                                transformer} (compiled dist/ only)}, lib/libstdc++.so.6 (used only
#                                if the target's is older than dawn.node needs)
#   .gpu-bundle/MANIFEST.txt     versions, sizes, sha256
#   .gl/*.deb                    Vulkan loader + glvnd (Debian bookworm), for machines without them
#
# benchmarks/gpu/device-command.sh unpacks and runs it. Usage: bash benchmarks/gpu/make-bundle.sh
# (NODE_BIN=/path/to/node to bundle another x86-64 Node; SKIP_GL=1 to leave .gl/ alone.)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

[ "$(uname -m)" = x86_64 ] || { echo "make-bundle: the GPU machine is x86-64; build the bundle on x86-64" >&2; exit 1; }
for p in /.gpu-bundle/ /.gl/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done

echo "== compiling the packages (tsc -b packages/cli packages/webgpu)"
npx tsc -b packages/cli packages/webgpu

STAGE=$(mktemp -d /tmp/gpu-bundle-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
RT=$STAGE/rt
mkdir -p "$RT/bin" "$RT/lib" "$RT/node_modules"

echo "== node"
NODE_BIN=${NODE_BIN:-$(command -v node)}
NODE_VER=$("$NODE_BIN" -p 'process.versions.node')
[ "${NODE_VER%%.*}" -ge 20 ] || { echo "make-bundle: need Node >= 20, $NODE_BIN is $NODE_VER" >&2; exit 1; }
cp "$(readlink -f "$NODE_BIN")" "$RT/bin/node"
chmod u+w "$RT/bin/node"
command -v strip >/dev/null && strip "$RT/bin/node" || echo "(strip not found: node left unstripped)"
"$RT/bin/node" --version

echo "== libstdc++ fallback"
cp "$(readlink -f "$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')")" "$RT/lib/libstdc++.so.6"

echo "== node_modules (runtime closure, trimmed)"
node --input-type=module - "$ROOT" "$RT" <<'EOF'
import { existsSync, readFileSync, cpSync, mkdirSync, rmSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
const [root, rt] = process.argv.slice(2);
// What the benchmark imports; everything else comes from walking "dependencies".
const roots = ['webgpu', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgpu', '@huggingface/tokenizers'];
// Types only, or not loaded by the Node bundles we keep (tfjs-backend-webgpu's Node bundle
// inlines the CPU kernels it shares; it require()s only tfjs-core).
const skip = (name) => name.startsWith('@types/') || name === '@webgpu/types' || name === '@tensorflow/tfjs-backend-cpu';
function locate(name, fromDir) {
  for (let d = fromDir; ; d = dirname(d)) {
    const c = join(d, 'node_modules', name);
    if (existsSync(join(c, 'package.json'))) return c;
    if (d === root || d === dirname(d)) throw new Error(`cannot resolve ${name} from ${fromDir}`);
  }
}
const seen = new Map();
const queue = roots.map((n) => [n, root]);
while (queue.length) {
  const [name, from] = queue.shift();
  if (skip(name)) continue;
  const dir = locate(name, from);
  if (seen.has(dir)) continue;
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  seen.set(dir, pkg);
  for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push([dep, dir]);
}
const keepOnly = {
  // package-relative paths to keep (plus package.json); everything else is dropped
  'webgpu': ['index.js', 'dist/linux-x64/dawn.node', 'LICENSE.md'],
  '@tensorflow/tfjs-core': ['dist/tf-core.node.js'],
  '@tensorflow/tfjs-backend-webgpu': ['dist/tf-backend-webgpu.node.js'],
  '@huggingface/tokenizers': ['dist/tokenizers.mjs', 'dist/tokenizers.cjs'],
};
const junk = /(\.map|\.d\.ts|\.d\.mts|\.d\.cts|\.ts|\.md|\.markdown|\.tsbuildinfo)$|(^|\/)(test|tests|__tests__|docs?|example|examples|\.github)(\/|$)/i;
for (const [dir, pkg] of seen) {
  const dest = join(rt, relative(root, dir));
  mkdirSync(dest, { recursive: true });
  const only = keepOnly[pkg.name];
  if (only) {
    for (const f of ['package.json', ...only]) {
      if (!existsSync(join(dir, f))) throw new Error(`${pkg.name}: ${f} missing`);
      mkdirSync(dirname(join(dest, f)), { recursive: true });
      cpSync(join(dir, f), join(dest, f));
    }
  } else {
    cpSync(dir, dest, {
      recursive: true,
      filter: (src) => {
        const r = relative(dir, src);
        if (r === '' || r === 'package.json') return true;
        if (r === 'node_modules' || r.startsWith('node_modules/')) return false; // nested deps are walked separately
        return !junk.test(r) || /LICEN[CS]E/i.test(r);
      },
    });
  }
  console.log(`  ${relative(root, dir)}@${pkg.version}`);
}
// Our packages: package.json + compiled JS, as node_modules/@softgrad/* (the benchmark imports
// them by name, as the repo's workspace links do).
for (const name of ['tensor', 'webgpu', 'transformer']) {
  const src = join(root, 'packages', name);
  const dest = join(rt, 'node_modules', '@softgrad', name);
  mkdirSync(dest, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    if (!skip(dep) && ![...seen.values()].some((p) => p.name === dep) && !dep.startsWith('@softgrad/')) throw new Error(`@softgrad/${name} needs ${dep}, not bundled`);
  }
  cpSync(join(src, 'package.json'), join(dest, 'package.json'));
  cpSync(join(src, 'dist'), join(dest, 'dist'), { recursive: true, filter: (s) => !/\.(map|d\.ts|tsbuildinfo)$/.test(s) });
  console.log(`  @softgrad/${name} (packages/${name}/dist)`);
}
EOF

echo "== packing"
mkdir -p .gpu-bundle
rm -f .gpu-bundle/runtime.tar.xz
du -sh "$RT" "$RT/bin/node" "$RT/node_modules"
# -T0 writes several xz blocks; both xz and Python's lzma (the fallback there) read them.
tar -C "$RT" -cf - . | xz -9 -T0 > .gpu-bundle/runtime.tar.xz
{
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- packages || echo ' (+ uncommitted changes in packages/)')"
  echo "node $("$RT/bin/node" --version)"
  for p in webgpu @tensorflow/tfjs-core @tensorflow/tfjs-backend-webgpu @huggingface/tokenizers; do
    echo "$p $(node -p "require('$RT/node_modules/$p/package.json').version")"
  done
  echo "unpacked $(du -sb "$RT" | cut -f1) bytes; packed $(stat -c %s .gpu-bundle/runtime.tar.xz) bytes"
  sha256sum .gpu-bundle/runtime.tar.xz
} > .gpu-bundle/MANIFEST.txt
cat .gpu-bundle/MANIFEST.txt

if [ -z "${SKIP_GL:-}" ]; then
  echo "== .gl (Vulkan loader and glvnd .debs, Debian bookworm amd64)"
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    apt-get $o update >/dev/null
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  ls -la .gl
fi

echo "== sizes (the device call carries .gpu-bundle and .gl beside the working tree; limit 64 MiB)"
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
bundle=$(du -cb .gpu-bundle .gl | tail -1 | cut -f1)
echo "working tree $tree bytes + bundle $bundle bytes = $(( (tree + bundle) / 1048576 )) MiB"
