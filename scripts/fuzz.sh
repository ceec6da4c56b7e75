#!/bin/sh
# The long fuzz job of the FASTA and label-file readers (issue 5): random byte mutations of
# random windows of every real file in the shared data (FuzzTests.testMutatedRealFiles).
# CI runs the same test with its default of 400 cases as part of `swift test`.
#
#   scripts/fuzz.sh [CASES] [SEED]      defaults: 10000 cases, seed 1
#
# Real data: KNEURON_SHARED_DATA, else ../shared/data. Prints the counts; exits non-zero on a
# failed assertion, a crash (the input is left in $TMPDIR/kneuron-fuzz-current.bin) or a hang
# (a case over 10 s fails the test and keeps its input; the whole job is capped at 1 hour).
set -eu
cd "$(dirname "$0")/.."
export KNEURON_FUZZ_CASES="${1:-10000}"
export KNEURON_FUZZ_SEED="${2:-1}"
exec timeout 3600 swift test -c release --filter 'ProteinDataTests.FuzzTests/testMutatedRealFiles'
