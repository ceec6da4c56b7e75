#!/usr/bin/env bash
# Puts the Swiss-Prot enzyme data the pipeline specs use into data/swissprot-ec/ and
# data/ec-names/.
#
#   data/fetch.sh --from DIR   copy from a local mirror laid out like ../shared/data
#                              (swissprot-ec/*.fasta, *.ec.tsv, *.combined.tsv; ec-names/enzclass.txt)
#   data/fetch.sh              download reviewed UniProtKB/Swiss-Prot entries with an EC number
#                              from the UniProt REST API and ExPASy's enzclass.txt, then draw the
#                              balanced samples (120 train + 40 test per EC class 1-7, single EC,
#                              20 standard residues, length 50-1022, seed 0).
#
# Running it again overwrites the files with the same content; the script is idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out_seq="$here/swissprot-ec"
out_names="$here/ec-names"
mkdir -p "$out_seq" "$out_names"

if [[ "${1:-}" == "--from" ]]; then
    src="${2:?usage: data/fetch.sh --from DIR}"
    [[ -d "$src/swissprot-ec" ]] || { echo "error: $src/swissprot-ec not found (expected a mirror laid out like ../shared/data)" >&2; exit 2; }
    for f in "$src"/swissprot-ec/*; do cp -f "$f" "$out_seq/"; done
    [[ -f "$src/ec-names/enzclass.txt" ]] && cp -f "$src/ec-names/enzclass.txt" "$out_names/"
    echo "copied $(ls "$out_seq" | wc -l) files from $src into $out_seq"
    exit 0
fi

# Download (needs network access to rest.uniprot.org and ftp.expasy.org).
url='https://rest.uniprot.org/uniprotkb/stream?compressed=false&format=tsv&fields=accession,ec,sequence&query=%28reviewed%3Atrue%29%20AND%20%28ec%3A%2A%29'
curl -fsSL "$url" -o "$out_seq/swissprot-ec-all.combined.tsv"
curl -fsSL 'https://ftp.expasy.org/databases/enzyme/enzclass.txt' -o "$out_names/enzclass.txt"
python3 - "$out_seq" <<'PY'
import random, sys, os
out = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "swissprot-ec-all.combined.tsv"))][1:]
std = set("ACDEFGHIKLMNPQRSTVWY")
by_class = {}
for acc, ec, seq in rows:
    ecs = [e.strip() for e in ec.split(";") if e.strip()]
    if len(ecs) != 1 or not (50 <= len(seq) <= 1022) or set(seq) - std:
        continue
    by_class.setdefault(ecs[0].split(".")[0], []).append((acc, ecs[0], seq))
rng = random.Random(0)
train, test = [], []
for c in sorted(by_class):
    items = sorted(by_class[c]); rng.shuffle(items)
    train += items[:120]; test += items[120:160]
for name, items in [("sample-train-840", train), ("sample-test-280", test)]:
    with open(os.path.join(out, name + ".fasta"), "w") as f:
        for acc, _, seq in items:
            f.write(">" + acc + "\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    with open(os.path.join(out, name + ".ec.tsv"), "w") as f:
        f.write("Entry\tEC number\n" + "".join(f"{a}\t{e}\n" for a, e, _ in items))
    print(f"{name}: {len(items)} sequences")
PY
