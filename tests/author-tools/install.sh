#!/usr/bin/env bash
# Installs the guest componentizers the author kit builds Python and JavaScript task modules
# with, pinned here (requirements.txt, package.json + package-lock.json), into
# ~/.cache/sei-operator/tools/<name>-<hash of the pin> (a no-op when cached), and prints
#   SEI_COMPONENTIZE_PY=<path>
#   SEI_COMPONENTIZE_JS=<path>
# for `sei-operator task build` (tests read these lines; `eval "$(bash install.sh)"` in a shell).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="${SEI_TOOLS_DIR:-$HOME/.cache/sei-operator/tools}"
mkdir -p "$tools"

py_key=$(sha256sum "$here/requirements.txt" | cut -c1-12)
py_dir="$tools/componentize-py-$py_key"
if [ ! -x "$py_dir/bin/componentize-py" ]; then
  rm -rf "$py_dir.tmp"
  python3 -m venv "$py_dir.tmp" >&2
  "$py_dir.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  rm -rf "$py_dir" && mv "$py_dir.tmp" "$py_dir"
  # A venv's scripts name their interpreter by absolute path: fix it after the move.
  sed -i "1s|.*|#!$py_dir/bin/python3|" "$py_dir/bin/componentize-py"
fi

js_key=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-12)
js_dir="$tools/componentize-js-$js_key"
if [ ! -x "$js_dir/node_modules/.bin/componentize-js" ]; then
  rm -rf "$js_dir.tmp" && mkdir -p "$js_dir.tmp"
  cp "$here/package.json" "$here/package-lock.json" "$js_dir.tmp/"
  (cd "$js_dir.tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
  rm -rf "$js_dir" && mv "$js_dir.tmp" "$js_dir"
fi

echo "SEI_COMPONENTIZE_PY=$py_dir/bin/componentize-py"
echo "SEI_COMPONENTIZE_JS=$js_dir/node_modules/.bin/componentize-js"
