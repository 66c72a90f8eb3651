#!/usr/bin/env bash
# Print the path of a CPython interpreter of the given major.minor version (e.g. 3.11).
# Looks on PATH first, then in pyenv's and uv's usual install folders.
set -u
want="$1"
for cand in "python$want" "$HOME"/.pyenv/versions/"$want"*/bin/"python$want" /usr/bin/"python$want" /usr/local/bin/"python$want" "$HOME"/.local/share/uv/python/cpython-"$want"*/bin/"python$want"; do
  if path=$(command -v "$cand" 2>/dev/null) && "$path" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$want'.split('.')))" 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo "Python $want not found: install it (e.g. 'pyenv install $want' or your package manager) and retry." >&2
exit 1
