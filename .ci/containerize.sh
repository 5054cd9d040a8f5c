#!/usr/bin/env bash
# Regenerate the committed Dockerfile from the workflow's conda environments:
#     bash .ci/containerize.sh            # rewrite ./Dockerfile
#     bash .ci/containerize.sh --check    # exit 1 (with a diff) when ./Dockerfile is stale
# `snakemake --containerize` writes one image with every env of envs/*.yaml prebuilt. It asks
# conda only for its platform (to look for envs/<name>.<platform>.pin.txt, which this project
# does not have) and version; where no conda is installed (this machine, CI) a stand-in answers
# for linux-64, so the output depends on the env files alone. tests/test_catalog.py runs --check.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE="${SNAKEMAKE:-.venv/bin/snakemake}"

stub=""
if ! command -v conda >/dev/null 2>&1; then
    stub="$(mktemp -d)"
    trap 'rm -rf "$stub"' EXIT
    cat > "$stub/conda" <<'STUB'
#!/bin/sh
# stand-in for `snakemake --containerize` only (see .ci/containerize.sh)
case "$*" in
    "info --json") echo '{"conda_prefix": "/opt/conda", "platform": "linux-64"}' ;;
    "--version") echo "conda 24.11.3" ;;
    "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
    *) echo "conda stand-in: unsupported: $*" >&2; exit 1 ;;
esac
STUB
    chmod +x "$stub/conda"
    export PATH="$stub:$PATH"
fi

out="$(mktemp)"
trap 'rm -rf "$out" ${stub:+"$stub"}' EXIT
"$SNAKEMAKE" --containerize --quiet all > "$out"
if [ "${1:-}" = "--check" ]; then
    if ! diff -u Dockerfile "$out"; then
        echo "Dockerfile is stale: run bash .ci/containerize.sh" >&2
        exit 1
    fi
    echo "Dockerfile is up to date"
else
    cp "$out" Dockerfile
    echo "wrote Dockerfile"
fi
