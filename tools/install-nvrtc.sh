#!/usr/bin/env bash
# Installs NVRTC 11.8 (libnvrtc11.2) and libcuda1 from Debian bookworm's non-free component through a private
# apt sources list, without touching the machine's own sources. Idempotent; needs root.
set -euo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # ldconfig (and dpkg, under apt) live there; a bare PATH may lack them
libs=$(ldconfig -p)   # whole, then matched: `ldconfig -p | grep -q` can SIGPIPE ldconfig, which pipefail reports as absent
if [[ $libs == *libnvrtc.so.11.2* && $libs == *libcuda.so.1* ]]; then exit 0; fi
src=$(mktemp -d)
echo 'deb http://deb.debian.org/debian bookworm main contrib non-free' > "$src/nonfree.list"
opts=(-o Dir::Etc::SourceList="$src/nonfree.list" -o Dir::Etc::SourceParts=/dev/null)
apt-get "${opts[@]}" update -qq
DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq --no-install-recommends libnvrtc11.2 libnvrtc-builtins11.8 libcuda1 >/dev/null
ldconfig
