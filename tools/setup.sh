#!/usr/bin/env bash
# Set up napari-polyp on a fresh machine: system libraries for Qt/OpenGL (when root),
# then a virtual environment in .venv with the package (editable) and its test tools.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

QT_LIBS="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
libxcb-cursor0 libfontconfig1 libdbus-1-3"

missing=$(for p in $QT_LIBS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system libraries: $(echo $missing)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: napari needs these system packages (install them as root): $(echo $missing)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# constraints.txt pins torch to the CPU wheel of this machine, napari below 0.10 and the Qt
# bindings. The package names no Qt binding (it joins the user's napari): the app's own install
# adds PyQt5, the default, and PyQt6, the second stack the suite runs on (.ci/run).
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]" PyQt5 PyQt6
echo "setup: done (.venv)"
