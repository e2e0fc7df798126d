#!/usr/bin/env bash
# Installs OpenBLAS (pthread build, Debian's libopenblas0-pthread) so the CPU backend's OpenBLAS GEMM path and its tests
# run, and so /usr/bin/python3's torch (which links libblas.so.3) gets OpenBLAS instead of reference BLAS through the
# alternatives system. Idempotent; needs root. Uses the machine's own apt sources (the package is in Debian main).
set -euo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # ldconfig (and dpkg, under apt) live there; a bare PATH may lack them
# matched whole: `ldconfig -p | grep -q` can SIGPIPE ldconfig, which pipefail reports as absent
if [[ $(ldconfig -p) == *libopenblas.so.0* ]]; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenblas0-pthread >/dev/null
ldconfig
