#!/usr/bin/env bash
# Install Chromium from Debian's packages for tests/test_report_browser.py (the HTML report
# opened in a real headless browser). Idempotent: does nothing when a Chromium is on PATH.
# Needs root (or passwordless sudo).
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "install_chromium: already installed: $("$name" --version 2>/dev/null | head -1)"
        exit 0
    fi
done
bash "$(dirname "$0")/apt_install.sh" chromium
echo "install_chromium: $(chromium --version 2>/dev/null | head -1)"
