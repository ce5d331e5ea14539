#!/usr/bin/env bash
# Installs what sandkube and its tests need on a fresh Debian machine, then builds the project.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: iproute2/iptables/nftables/keyutils/curl for the probes (doctor and
# test/host/probe-network try the nftables family with `nft`, so it must be installed), busybox-static for test images,
# docker-registry and skopeo for the real loopback registry, jq for the lab scenarios, libseccomp-dev
# for the lab's runc, gcc for native/.
packages=(iproute2 iptables nftables keyutils curl jq busybox-static docker-registry skopeo libseccomp-dev gcc libc6-dev make util-linux bsdutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root (or install them) and retry" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "setup: build"
npm run --silent build
