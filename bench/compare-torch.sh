#!/usr/bin/env bash
# kneuron vs PyTorch 2.13 CPU on the same machine, alternating the two in one run.
#
#   bench/compare-torch.sh [--pairs N] [--repeat R] [--native-blas]
#
# Each pair runs `kneuron bench --workload W --json` and `bench/torch_bench.py --workload W`
# for W in forward, train, ig (R timed repeats after a warm-up, each in a fresh process), then
# prints per workload the ratio kneuron/torch of the medians: its median and spread over the
# pairs. Also printed: the sgemm GFLOP/s of the model's largest GEMM (2048x1280x320) through
# the same OpenBLAS and threads as kneuron's kernels, and forward's share of it.
#
# --native-blas runs kneuron with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (this
# environment sets OPENBLAS_CORETYPE=Haswell, which halves OpenBLAS's speed); the core type
# used is printed either way. torch uses its own MKL and is not affected.
# Needs: a release build (swift build -c release) and a Python with torch==2.13.0 (CPU) and
# transformers (scripts/reference/requirements.txt); set PYTHON=/path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=10 repeat=3 native=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pairs) pairs="$2"; shift 2;;
        --repeat) repeat="$2"; shift 2;;
        --native-blas) native=1; shift;;
        *) echo "usage: bench/compare-torch.sh [--pairs N] [--repeat R] [--native-blas]" >&2; exit 2;;
    esac
done
kneuron="${KNEURON:-.build/release/kneuron}"
python="${PYTHON:-python3}"
[[ -x "$kneuron" ]] || { echo "no $kneuron: run swift build -c release first" >&2; exit 1; }
"$python" -c "import torch, transformers" 2>/dev/null || { echo "$python lacks torch/transformers: set PYTHON" >&2; exit 1; }
runk=("$kneuron")
if [[ $native == 1 ]]; then runk=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$kneuron"); fi

out=$(mktemp)
for ((i = 1; i <= pairs; i++)); do
    for w in forward train ig; do
        "${runk[@]}" bench --workload "$w" --repeat "$repeat" --json | sed "s/^/kneuron $i /" >> "$out"
        "$python" bench/torch_bench.py --workload "$w" --repeat "$repeat" 2>/dev/null | sed "s/^/torch $i /" >> "$out"
    done
    echo "pair $i/$pairs done" >&2
done

"$python" - "$out" "$native" <<'PY'
import json, os, platform, statistics, sys
rows = {}
sgemm = []
coretype = "?"
for line in open(sys.argv[1]):
    tool, pair, text = line.split(" ", 2)
    d = json.loads(text)
    if d["workload"].startswith("sgemm"):
        sgemm.append(d["gflops"]); coretype = d.get("openblas_coretype", "?"); continue
    rows.setdefault(d["workload"], {}).setdefault(int(pair), {})[tool] = d
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"machine: {cpu}, {os.cpu_count()} cores; 2 threads each; kneuron OpenBLAS core type: "
      f"{'native (OPENBLAS_CORETYPE unset)' if sys.argv[2] == '1' else coretype}; torch MKL")
print(f"{'workload':9} {'kneuron ms':>11} {'torch ms':>9} {'ratio median':>13} {'ratio min..max':>16} {'kneuron GFLOP/s':>16} {'RSS MB k/t':>12}")
for w in ["forward", "train", "ig"]:
    pairs = [p for p in rows.get(w, {}).values() if "kneuron" in p and "torch" in p]
    if not pairs: continue
    ratios = [p["kneuron"]["median_ms"] / p["torch"]["median_ms"] for p in pairs]
    k = statistics.median(p["kneuron"]["median_ms"] for p in pairs)
    t = statistics.median(p["torch"]["median_ms"] for p in pairs)
    g = statistics.median(p["kneuron"]["gflops"] for p in pairs)
    rk = max(p["kneuron"]["peak_rss_mb"] for p in pairs); rt = max(p["torch"]["peak_rss_mb"] for p in pairs)
    print(f"{w:9} {k:11.1f} {t:9.1f} {statistics.median(ratios):13.3f} {min(ratios):7.3f}..{max(ratios):<7.3f} {g:16.1f} {rk:5.0f}/{rt:<5.0f}")
    if w == "forward" and sgemm:
        s = statistics.median(sgemm)
        print(f"sgemm 2048x1280x320 through kneuron's BLAS and threads: {s:.1f} GFLOP/s; forward reaches {100 * g / s:.0f}% of it")
print(f"pairs: {len(rows.get('forward', {}))}")
PY
rm -f "$out"
