#!/usr/bin/env bash
# Mutation testing of the result-bearing modules with mutmut (slow: not part of `make test` or CI).
#
#   benchmarks/mutation.sh [MUTANT_GLOB ...]     e.g. benchmarks/mutation.sh 'vidbench.policy.*' 'vidbench_methods.*'
#
# mutmut names a mutant after its file's path, and the engine imports a method as the package
# vidbench_methods.<name>: so the run works on a staged copy of the project in build/mutation/ in which
# methods/ is copied to vidbench_methods/ and VIDBENCH_METHODS points there. Which modules are mutated
# and which tests run is [tool.mutmut] in pyproject.toml; per mutant mutmut runs only the tests that
# call the mutated function. Results stay in build/mutation/mutants/ (a rerun retries what changed);
# MUTATION_FRESH=1 starts over; MUTATION_SAMPLE=N tries N seeded-random mutants a module (and retries earlier
# survivors); MUTATION_SURVIVORS=1 retries only the survivors; MUTATION_JOBS=N
# parallel children (default 2). Summary: build/mutation/score.txt (benchmarks/mutation_score.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAGE=$(realpath -m "${MUTATION_DIR:-$ROOT/build/mutation}")  # absolute: the run works inside it
BIN=$ROOT/.venv/bin
[[ "${MUTATION_FRESH:-0}" == 1 ]] && rm -rf "$STAGE"
mkdir -p "$STAGE"
# the sources as they are now, with their times (mutmut re-mutates a file only when it changed)
rm -rf "$STAGE"/{vidbench,analysis,tests,workflow,vidbench_methods,pyproject.toml}
cp -rp vidbench analysis tests workflow pyproject.toml "$STAGE/"
cp -rp methods "$STAGE/vidbench_methods"
cd "$STAGE"
# MUTATION_ONLY="file ..." / MUTATION_TESTS="tests/x.py ...": mutate only those files / run only those tests
# (in the staged pyproject.toml; use a MUTATION_DIR of their own: another test selection resets mutmut's results)
"$BIN/python" - <<'PY'
import os, re
from pathlib import Path

path = Path("pyproject.toml")
text = path.read_text()
for env, key, extra in (("MUTATION_ONLY", "only_mutate", []),
                        ("MUTATION_TESTS", "pytest_add_cli_args_test_selection", ["-m", "not slow", "-W", "ignore"])):
    if os.environ.get(env):
        value = "[" + ", ".join(f'"{v}"' for v in extra + os.environ[env].split()) + "]"
        text = re.sub(rf"^{key} = \[.*?\]", f"{key} = {value}", text, count=1, flags=re.S | re.M)
path.write_text(text)
PY
export VIDBENCH_METHODS=$STAGE/mutants/vidbench_methods
export PATH="$BIN:$PATH"
run() {   # one timed mutmut run: build/mutation/times.txt, its log build/mutation/run-<label>.log
    local label=$1 start=$SECONDS
    shift
    "$BIN/mutmut" run --max-children "${MUTATION_JOBS:-2}" "$@" > "$STAGE/run-$label.log" 2>&1 || true
    echo "$label $# patterns $((SECONDS - start)) s $(date -u +%FT%TZ)" | tee -a "$STAGE/times.txt"
}
if [[ "${MUTATION_SURVIVORS:-0}" == 1 ]]; then
    # MUTATION_SURVIVORS=1: retry only the mutants that survived an earlier run (after adding tests)
    mapfile -t names < <("$BIN/python" "$ROOT/benchmarks/mutation_score.py" "$STAGE/mutants" --survivors)
    run survivors "${names[@]}"
elif [[ -n "${MUTATION_SAMPLE:-}" ]]; then
    # MUTATION_SAMPLE=N: N mutants a module, drawn with a fixed seed (a full run takes many hours on 2 cores).
    # The first run generates every mutant and maps tests to functions (and tries the first mutant of each
    # function of the first module: mutmut needs a name that matches)
    first=${MUTATION_ONLY:-vidbench/metrics.py}
    first=${first%% *}
    first=${first%.py}
    run first "${first//\//.}.*__mutmut_1"
    # ... and every mutant that survived an earlier run again (tests may have been added since)
    mapfile -t names < <("$BIN/python" "$ROOT/benchmarks/mutation_score.py" "$STAGE/mutants" --sample "$MUTATION_SAMPLE";
                         "$BIN/python" "$ROOT/benchmarks/mutation_score.py" "$STAGE/mutants" --survivors)
    run sample "${names[@]}"
else
    for pattern in "${@:-*}"; do run "${pattern//\*/all}" "$pattern"; done
fi
"$BIN/python" "$ROOT/benchmarks/mutation_score.py" "$STAGE/mutants" | tee "$STAGE/score.txt"
