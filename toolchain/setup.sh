#!/usr/bin/env bash
# Create .venv and install edge_sdk with the extras the tests and the quick start use.
# Torch is pinned through constraints.txt (a CPU build on this project's machines).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # the tests' real devices: ffmpeg cameras, a PulseAudio microphone, an X display; then
  # GStreamer's RTSP server (without its recommends: they pull ghostscript and ImageMagick)
  apt_install() {
    local missing="" p
    for p in "${@:2}"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    [ -z "$missing" ] && return 0
    echo "setup: apt-get install$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $1 $missing >/dev/null
  }
  apt_install "" ffmpeg libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins xvfb xdotool
  apt_install --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[train,export,executorch,live,dev]"
echo "setup: ready (.venv)"
