#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries a binary links directly
# (its DT_NEEDED entries), one a line: what the image's final stage must install for the
# plugin built in its build stage. Usage: scripts/runtime-packages.sh FILE.so
set -euo pipefail
binary="${1:?usage: runtime-packages.sh FILE.so}"
mapfile -t needed < <(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}')
resolved=$(ldd "$binary")
for library in "${needed[@]}"; do
  # "libx.so.1 => /path/libx.so.1 (0x...)", or "/path/ld-linux-x86-64.so.2 (0x...)"
  path=$(awk -v l="$library" '$1 == l && $3 ~ /^\// {print $3}
                              $1 ~ "/" l "$" {print $1}' <<<"$resolved")
  if [[ -z "$path" ]]; then
    echo "runtime-packages: $binary needs $library, which is not installed" >&2
    exit 1
  fi
  # Debian 12 merges /lib into /usr/lib; dpkg may know a file by either name.
  real=$(realpath "$path")
  dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || {
    echo "runtime-packages: no package owns $real ($library)" >&2
    exit 1
  }
done | cut -d: -f1 | sort -u
