# Shared by scripts/quickstart.sh and scripts/test.sh (sourced, not run).

# The Debian/Ubuntu packages kneuron builds against (OpenBLAS, SQLite, zlib, pkg-config).
KNEURON_PACKAGES=(libopenblas-dev pkg-config libsqlite3-dev zlib1g-dev)

# The one build both README commands share: release, with testing enabled, so that the main
# job and the tests do not rebuild each other's products (swift test enables testing itself;
# a plain `swift build -c release` would compile every module again).
KNEURON_BUILD_FLAGS=(-c release -Xswiftc -enable-testing)

# require_packages PKG...: installs the missing Debian packages when running as root, otherwise
# prints the one command to run and exits 1.
require_packages() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -eq 0 ]]; then
        echo "installing ${missing[*]} (apt-get)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "kneuron needs these system packages: ${missing[*]}. Install them with" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        echo "then run this command again." >&2
        exit 1
    fi
}

# require_swift: stops with a message when no Swift toolchain is on PATH.
require_swift() {
    command -v swift >/dev/null 2>&1 && return 0
    echo "kneuron needs Swift 6 (tested with 6.3): install it from https://www.swift.org/install/linux/ and put swift on PATH" >&2
    exit 1
}

# find_mirror: prints the absolute path of a local data mirror (KNEURON_SHARED_DATA, ../shared/data
# next to the checkout, or the machines' /work/shared/data), or nothing.
find_mirror() {
    for candidate in "${KNEURON_SHARED_DATA:-}" ../shared/data /work/shared/data; do
        if [[ -n "$candidate" && -d "$candidate/swissprot-ec" ]]; then (cd "$candidate" && pwd); return 0; fi
    done
}

# fetch_data [DIR]: puts the Swiss-Prot data into data/ unless it is there: copied from DIR, else
# from the local mirror (find_mirror), else downloaded from UniProt (data/fetch.sh).
fetch_data() {
    local from=${1:-}
    if [[ -z "$from" && -f data/swissprot-ec/sample-train-840.fasta ]]; then return 0; fi
    [[ -n "$from" ]] || from=$(find_mirror)
    if [[ -n "$from" ]]; then data/fetch.sh --from "$from"; else data/fetch.sh; fi
}
