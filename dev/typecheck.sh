#!/usr/bin/env bash
# Type-check the add-on as the package Blender imports (`cloud_render`), plus dev/ and bench/.
# The repository root is the package, so it is checked through a link named like the add-on id.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ln -s "$root" "$tmp/cloud_render"
cd "$root"
MYPYPATH="$tmp" .venv/bin/mypy -p cloud_render
.venv/bin/mypy dev bench
