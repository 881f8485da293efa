#!/usr/bin/env bash
# Installs everything hopcap and its lab need on a fresh Debian machine (as root):
# system packages with apt-get, Python packages into ./.venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# (python3-dev: Python's headers, for the compiled helper hopcap.correlate._objects)
PKGS=(openssh-server openssh-client tcpdump nftables haproxy iproute2 curl procps
      conntrack iptables tshark python3-venv python3-dev sudo gcc libc6-dev dropbear-bin
      busybox libcap2-bin)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: needs root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the Debian packages start daemons we do not want on the host itself
for svc in ssh haproxy; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: ready (.venv/bin/hopcap)" >&2
