#!/usr/bin/env bash
# Install and start what the lab and the integration tests need: Open vSwitch (userspace
# datapath: this kernel has no openvswitch module), Mininet, ethtool, ping, Graphviz, and etcd
# (the cluster tests start their own members on loopback ports; the packaged service is stopped),
# and Chromium with its WebDriver (the console's browser tests; selenium comes from PyPI).
# Idempotent: quick when everything is already there. Needs root.
set -euo pipefail

packages=(openvswitch-switch mininet ethtool iputils-ping iproute2 graphviz etcd-server chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! /usr/share/openvswitch/scripts/ovs-ctl status >/dev/null 2>&1; then
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null
fi
ovs-vsctl --timeout=10 show >/dev/null
echo "Open vSwitch $(ovs-vsctl --version | head -1 | awk '{print $NF}') running"
