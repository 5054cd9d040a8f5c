#!/usr/bin/env bash
# Install a single-node Slurm (munge + slurmctld + slurmd + clients) for
# tests/test_slurm.py on Debian/Ubuntu. Idempotent: does nothing when the
# packages are already installed. Needs root (or passwordless sudo).
set -euo pipefail

bash "$(dirname "$0")/apt_install.sh" munge slurm-client slurmctld slurmd
echo "install_slurm: $(slurmctld -V)"
