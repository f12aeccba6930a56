#!/usr/bin/env bash
# Create .venv and install edge_sdk with the extras the tests and the quick start use.
# Torch is pinned through constraints.txt (a CPU build on this project's machines).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in ffmpeg libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins xvfb xdotool; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[train,export,executorch,live,dev]"
echo "setup: ready (.venv)"
