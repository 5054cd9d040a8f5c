#!/usr/bin/env bash
# Install a single-node Slurm (munge + slurmctld + slurmd + clients) for
# tests/test_slurm.py on Debian/Ubuntu. Idempotent: does nothing when the
# packages are already installed. Needs root (or passwordless sudo).
set -euo pipefail

PACKAGES=(munge slurm-client slurmctld slurmd)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install_slurm: already installed: ${PACKAGES[*]}"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "install_slurm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_slurm: $(slurmctld -V)"
