#!/usr/bin/env bash
# The cluster workflow for one kneuron run, as three Slurm jobs chained with dependencies:
#   1. prepare: ingest, tokenize, split and train (one job; resubmit it if it is killed, training
#      resumes after the last finished epoch)
#   2. attribute: a job array; task i scores the shards s with s % N == i (kneuron reads
#      SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT); all tasks write to
#      the same SQLite database (WAL); the last task to finish combines the scores
#   3. finish: select, evaluate and report (`kneuron run` skips everything already recorded; it
#      runs after the array whatever its exit states, and does any shard a killed task left)
#
# Usage (from the repository root, on a shared filesystem that supports POSIX locks):
#   pipelines/slurm/quickstart-array.sh [SPEC] [TASKS]
# Adjust the #SBATCH resources in the here-documents to your cluster.
set -euo pipefail
spec="${1:-pipelines/quickstart.yaml}"
tasks="${2:-4}"
kneuron="${KNEURON:-$PWD/.build/release/kneuron}"
db="${KNEURON_DB:-$PWD/runs/$(basename "$spec" .yaml).sqlite}"
mkdir -p "$(dirname "$db")" logs

prepare=$(sbatch --parsable --job-name=kn-prepare --cpus-per-task=2 --time=01:00:00 --output=logs/%x-%j.out <<EOS
#!/usr/bin/env bash
set -euo pipefail
for stage in ingest tokenize split train; do "$kneuron" \$stage "$spec" --db "$db" --quiet; done
EOS
)

attribute=$(sbatch --parsable --job-name=kn-attribute --dependency=afterok:$prepare --array=0-$((tasks - 1)) \
    --cpus-per-task=2 --time=01:00:00 --output=logs/%x-%A_%a.out <<EOS
#!/usr/bin/env bash
set -euo pipefail
"$kneuron" attribute "$spec" --db "$db" --quiet
EOS
)

sbatch --parsable --job-name=kn-finish --dependency=afterany:$attribute --cpus-per-task=2 --time=00:30:00 \
    --output=logs/%x-%j.out <<EOS
#!/usr/bin/env bash
set -euo pipefail
"$kneuron" run "$spec" --db "$db" --quiet
"$kneuron" status --db "$db"
EOS
