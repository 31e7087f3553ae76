#!/usr/bin/env bash
# System packages the test suite needs: Mesa's lavapipe (software Vulkan) from
# bookworm-backports, because Debian 12's own Mesa is refused by Dawn, and Chromium
# for the in-browser WebGPU test. See docs/webgpu.md.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/softgrad-backports.sources
if [ -f "$src" ] && [ ! -f "$bp" ]; then
  awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" | sed -E 's/^Suites:.*/Suites: bookworm-backports/' > "$bp"
fi
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
apt-get install -y -qq chromium >/dev/null
