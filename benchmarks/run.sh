#!/usr/bin/env bash
# Runs the comparison benchmarks of this module, then prints benchstat's
# table (contenders side by side) and each contender's ratios to the bare
# transport.
#
# Usage: ./run.sh [-core] [N]
#
#   N       runs of each benchmark, the -count of go test (default 6; also
#           from $COUNT)
#   -core   also run the core package's benchmarks (saferetry against bare,
#           the in-memory overhead and the micro-benchmarks)
#
# Environment:
#   BENCH              -bench regexp for this module (default .)
#   CORE_BENCH         -bench regexp for the core package (default: the
#                      benchmarks of bench_test.go)
#   BENCHTIME          -benchtime (default 1s)
#   INTERLEAVE         1 (default): N rounds of go test -count 1, so that
#                      every contender is measured in every round and a
#                      change in the machine's load touches all of them
#                      alike; 0: one go test -count N, which measures each
#                      contender's N runs back to back
#   OUT                file that keeps the raw go test output (default: a
#                      new file in a temporary directory; its name is printed)
#   BENCHSTAT_VERSION  version of golang.org/x/perf/cmd/benchstat to run
#                      (default a pinned one; "latest" works too)
#
# The figures are wall time on whatever else the machine runs: use an idle
# machine, and trust only differences benchstat reports as significant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
core=false
count=${COUNT:-6}
for arg in "$@"; do
	case $arg in
	-core) core=true ;;
	'' | *[!0-9]*)
		echo "usage: $0 [-core] [N]" >&2
		exit 2
		;;
	*) count=$arg ;;
	esac
done
if [ "$count" -lt 1 ]; then
	echo "$0: N must be at least 1" >&2
	exit 2
fi
bench=${BENCH:-.}
core_bench=${CORE_BENCH:-'^Benchmark(GET|GETParallel|POSTSmall|POSTStream|PUTFile|Retry|RetryParallel|Overhead|Classify|ExponentialDelay|RetryAfterParse)$'}
benchtime=${BENCHTIME:-1s}
interleave=${INTERLEAVE:-1}
benchstat_version=${BENCHSTAT_VERSION:-v0.0.0-20260908200009-22c9c6c9d4da}
out=${OUT:-$(mktemp -d)/bench.txt}
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

cd "$here"
: >"$out"

# run_all COUNT: one go test per package, appending to $out.
run_all() {
	go test -run '^$' -bench "$bench" -benchmem -benchtime "$benchtime" -count "$1" \
		github.com/saferetry/saferetry/benchmarks | tee -a "$out"
	if $core; then
		go test -run '^$' -bench "$core_bench" -benchmem -benchtime "$benchtime" -count "$1" \
			github.com/saferetry/saferetry | tee -a "$out"
	fi
}

go version
echo "raw output: $out"
if [ "$interleave" = 1 ]; then
	for round in $(seq "$count"); do
		echo "== round $round of $count: go test -run '^\$' -bench '$bench' -benchmem -benchtime $benchtime -count 1"
		run_all 1
	done
else
	echo "== go test -run '^\$' -bench '$bench' -benchmem -benchtime $benchtime -count $count"
	run_all "$count"
fi

echo
echo "== benchstat (golang.org/x/perf/cmd/benchstat@$benchstat_version)"
# Columns are the contenders, bare first; each "vs base" column compares a
# contender with bare ("~": not significant at p < 0.05).
benchstat=(go run "golang.org/x/perf/cmd/benchstat@$benchstat_version")
"${benchstat[@]}" -col '/transport@(bare saferetry saferetry+budget retryablehttp failsafehttp rehttp)' "$out"
if $core; then
	echo
	echo "== benchstat: the micro-benchmarks (no transport= element)"
	"${benchstat[@]}" -filter '-.fullname:/transport=/' "$out"
fi

echo
echo "== ratios to the bare transport (medians)"
go run ./cmd/ratios "$out"
