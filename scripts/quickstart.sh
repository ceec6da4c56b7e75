#!/usr/bin/env bash
# The README's main job: the quickstart pipeline on 1,120 real Swiss-Prot enzymes, end to end.
#
#   scripts/quickstart.sh [--from DIR] [kneuron run options, e.g. --db PATH, --force STAGE]
#
# Installs the missing system packages when run as root (otherwise prints the one apt-get line
# and stops), puts the data into data/ (copied from --from DIR or a local mirror, else
# downloaded), builds kneuron (the same build as scripts/test.sh) and runs
# `kneuron run pipelines/quickstart.yaml`. Run it again after an interruption: it resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
from=""
if [[ "${1:-}" == "--from" ]]; then from=${2:?usage: scripts/quickstart.sh --from DIR}; shift 2; fi
require_swift
require_packages "${KNEURON_PACKAGES[@]}"
fetch_data "$from"
swift build "${KNEURON_BUILD_FLAGS[@]}" --product kneuron
exec .build/release/kneuron run pipelines/quickstart.yaml "$@"
