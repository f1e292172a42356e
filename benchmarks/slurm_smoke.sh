#!/usr/bin/env bash
# Slurm smoke test (slow, not part of `make test` or CI): starts a one-node Slurm cluster on this machine
# and runs the test config (workflow/config/test.yaml) through workflow/profiles/slurm, end to end.
#
#   benchmarks/slurm_smoke.sh          # as root on Debian or Ubuntu
#
# It installs slurm-wlm and munge with apt-get if they are missing, builds .venv (`make env`) if missing
# and installs snakemake-executor-plugin-slurm into it if missing (with -c constraints.txt, so torch stays).
# Everything else lives in a temporary directory: a munge key; a slurm.conf without accounting (no
# slurmdbd, so the profile's `slurm-status-command: squeue` is what works) with one partition for each
# slurm_partition the profile names, seen as /etc/slurm/slurm.conf only inside the script's own mount
# namespace (the plugin's job steps drop SLURM_CONF, so srun must find the default path); and a copy of
# the checkout (tracked and untracked files, not ignored ones) in which Snakemake runs, so ./results
# and ./.snakemake are not touched. It starts munged, slurmctld and slurmd (on their own socket and
# ports), checks the final outputs and that every Slurm job completed in the partition the profile
# gives its rule, and on exit cancels its jobs and stops the daemons it started, by their process ids.
# Last line: PASS or FAIL, seconds and jobs.
#
# Environment: SMOKE_TIMEOUT (seconds for the workflow, default 3600), SMOKE_PORT (slurmctld port,
# slurmd uses the next one; default 16817), SMOKE_KEEP=1 keeps the temporary directory (it is kept on
# FAIL anyway), SMOKE_STATUS_SECONDS (the plugin's first status check after a submission, default 10;
# the plugin's own default, 40, only adds waiting on a one-node cluster).
set -euo pipefail
if [[ -z ${SMOKE_IN_NAMESPACE:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "FAIL: slurm smoke: needs root (apt-get, munged, slurmd, a mount namespace)"; exit 1; }
    # a private mount namespace: /etc/slurm is bind-mounted from the temporary directory there only
    SMOKE_IN_NAMESPACE=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
START=$SECONDS
PLUGIN_SPEC='snakemake-executor-plugin-slurm>=2.8,<3'
TIMEOUT=${SMOKE_TIMEOUT:-3600}
PORT=${SMOKE_PORT:-16817}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vidbench-slurm-smoke.XXXXXX")
DAEMON_PIDS=()   # munged, slurmctld, slurmd: the only processes this script stops
JOBS="?"
VERDICT=""
MOUNTED=false

say() { echo "slurm_smoke: $*"; }
fail() {
    VERDICT=FAIL
    echo "FAIL: slurm smoke: $* ($((SECONDS - START)) s, jobs: $JOBS; files in $WORK)"
    exit 1
}

cleanup() {
    local rc=$? pid i
    trap - EXIT
    set +e
    if ((${#DAEMON_PIDS[@]} > 1)); then
        # jobs still queued or running (a failed or interrupted run) go first, so no slurmstepd stays behind
        scancel --user "$(id -un)" 2>/dev/null
        for i in $(seq 20); do
            [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    for ((i = ${#DAEMON_PIDS[@]} - 1; i >= 0; i--)); do   # slurmd, slurmctld, then munged
        pid=${DAEMON_PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    $MOUNTED && umount /etc/slurm
    if [[ -z $VERDICT && $rc -ne 0 ]]; then
        echo "FAIL: slurm smoke: exit code $rc ($((SECONDS - START)) s, jobs: $JOBS; files in $WORK)"
    elif [[ $VERDICT == PASS && ${SMOKE_KEEP:-0} != 1 ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- software
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get; log: $WORK/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends slurm-wlm munge \
        || { apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge; }; } \
        > "$WORK/apt.log" 2>&1 || fail "apt-get install slurm-wlm munge failed (see $WORK/apt.log)"
fi
SLURM_VERSION=$(slurmctld -V | awk '{print $2}')
[[ -x $BIN/vidbench ]] || make env > "$WORK/make-env.log" 2>&1 || fail "make env failed (see $WORK/make-env.log)"
if ! "$BIN/python" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null; then
    say "installing $PLUGIN_SPEC into .venv"
    "$BIN/pip" install -q -c constraints.txt "$PLUGIN_SPEC" > "$WORK/pip.log" 2>&1 \
        || fail "pip install $PLUGIN_SPEC failed (see $WORK/pip.log)"
fi
PLUGIN_VERSION=$("$BIN/python" -c 'from importlib.metadata import version; print(version("snakemake-executor-plugin-slurm"))')
# Snakemake loads the plugin and knows the options the profile uses: the versions fit together
"$BIN/snakemake" --help > "$WORK/snakemake-help.txt" 2>&1 || fail "snakemake --help failed with the slurm plugin $PLUGIN_VERSION"
for option in --slurm-status-command --slurm-no-account --slurm-init-seconds-before-status-checks; do
    grep -q -- "$option" "$WORK/snakemake-help.txt" \
        || fail "snakemake-executor-plugin-slurm $PLUGIN_VERSION has no $option: pip install -c constraints.txt '$PLUGIN_SPEC'"
done
say "Slurm $SLURM_VERSION, snakemake $("$BIN/snakemake" --version), snakemake-executor-plugin-slurm $PLUGIN_VERSION"

# ---------------------------------------------------------------- the cluster
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
# one partition for every slurm_partition the profile names (default-resources and set-resources)
PARTITIONS=$("$BIN/python" - <<'PY'
import yaml
profile = yaml.safe_load(open("workflow/profiles/slurm/config.yaml"))
names = [profile.get("default-resources", {}).get("slurm_partition")]
names += [rule.get("slurm_partition") for rule in (profile.get("set-resources") or {}).values()]
print(" ".join(dict.fromkeys(n for n in names if n)))
PY
)
[[ -n $PARTITIONS ]] || fail "the profile names no slurm_partition"
DEFAULT_PARTITION=${PARTITIONS%% *}
mkdir -p "$WORK"/{etc-slurm,munge,run,state,spool,log}
chmod 755 "$WORK" "$WORK/run"   # munged wants every directory above its socket open to all (x)
chmod 700 "$WORK/munge"
head -c 1024 /dev/urandom > "$WORK/munge/munge.key"
chmod 400 "$WORK/munge/munge.key"
SOCKET=$WORK/run/munge.socket
{
    echo "# one-node cluster of benchmarks/slurm_smoke.sh: no accounting, no cgroups (task/none, proctrack/linuxproc)"
    echo "ClusterName=vidbench-smoke"
    echo "SlurmctldHost=$HOST(127.0.0.1)"
    echo "SlurmctldPort=$PORT"
    echo "SlurmdPort=$((PORT + 1))"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$SOCKET"
    echo "StateSaveLocation=$WORK/state"
    echo "SlurmdSpoolDir=$WORK/spool"
    echo "SlurmctldPidFile=$WORK/slurmctld.pid"
    echo "SlurmdPidFile=$WORK/slurmd.pid"
    echo "SlurmctldLogFile=$WORK/log/slurmctld.log"
    echo "SlurmdLogFile=$WORK/log/slurmd.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "JobCompType=jobcomp/none"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/backfill"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU_Memory"
    echo "ReturnToService=2"
    # squeue sees a finished job for MinJobAge seconds: the plugin needs >= 120 s for squeue; 1 h keeps
    # every job's record for the checks below
    echo "MinJobAge=3600"
    echo "NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"
    for partition in $PARTITIONS; do
        default=NO
        [[ $partition == "$DEFAULT_PARTITION" ]] && default=YES
        echo "PartitionName=$partition Nodes=ALL Default=$default MaxTime=INFINITE State=UP"
    done
} > "$WORK/etc-slurm/slurm.conf"
unset SLURM_CONF
[[ -d /etc/slurm ]] || fail "no /etc/slurm (is slurm-wlm installed?)"
mount --bind "$WORK/etc-slurm" /etc/slurm || fail "could not bind-mount $WORK/etc-slurm on /etc/slurm"
MOUNTED=true

munged -F --socket="$SOCKET" --key-file="$WORK/munge/munge.key" --pid-file="$WORK/munge/munged.pid" \
    --seed-file="$WORK/munge/munged.seed" --log-file="$WORK/log/munged.log" > "$WORK/log/munged.out" 2>&1 &
DAEMON_PIDS+=($!)
for _ in $(seq 20); do [[ -S $SOCKET ]] && break; sleep 0.5; done
munge -S "$SOCKET" -n 2>/dev/null | unmunge -S "$SOCKET" > /dev/null 2>&1 \
    || fail "munged did not start (see $WORK/log/munged.log)"
slurmctld -D -c > "$WORK/log/slurmctld.out" 2>&1 &
DAEMON_PIDS+=($!)
for _ in $(seq 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
scontrol ping 2>/dev/null | grep -q UP || fail "slurmctld did not start (see $WORK/log/slurmctld.log)"
slurmd -D -N "$HOST" > "$WORK/log/slurmd.out" 2>&1 &
DAEMON_PIDS+=($!)
for _ in $(seq 60); do [[ $(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1) == idle ]] && break; sleep 1; done
[[ $(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1) == idle ]] || fail "slurmd did not come up (see $WORK/log/slurmd.log)"
timeout 60 srun -n 1 true > "$WORK/log/srun.out" 2>&1 || fail "a one-task srun did not run (see $WORK/log/)"
say "one-node cluster up: $HOST, $CPUS CPUs, $MEM_MB MB, partitions: $PARTITIONS (daemon pids ${DAEMON_PIDS[*]})"

# ---------------------------------------------------------------- the workflow
STAGE=$WORK/checkout
mkdir -p "$STAGE"
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf - | tar -xf - -C "$STAGE"
else
    tar --exclude=./.venv --exclude=./.git --exclude=./results --exclude=./data --exclude=./.snakemake -cf - . \
        | tar -xf - -C "$STAGE"
fi
# --cores: the profile's `cores` (CPUs of one node; the measure job asks for all of them) set to this node's
SMK=(snakemake --profile workflow/profiles/slurm --cores "$CPUS" --configfile workflow/config/test.yaml
     --config "results=$WORK/results" "data_dir=$WORK/data")
say "running: ${SMK[*]} (in $STAGE, log: $WORK/snakemake.log)"
cd "$STAGE"
rc=0
PATH="$BIN:$PATH" timeout "$TIMEOUT" "${SMK[@]}" \
    --slurm-init-seconds-before-status-checks "${SMOKE_STATUS_SECONDS:-10}" > "$WORK/snakemake.log" 2>&1 || rc=$?
JOBS=$(grep -oE '[0-9]+ of [0-9]+ steps' "$WORK/snakemake.log" | tail -1 | awk '{print $1 "/" $3}' || true)
JOBS=${JOBS:-0}
if ((rc != 0)); then
    tail -n 30 "$WORK/snakemake.log"
    ((rc == 124)) && fail "the workflow ran past SMOKE_TIMEOUT=$TIMEOUT s"
    fail "snakemake exited with $rc (log: $WORK/snakemake.log)"
fi

# ---------------------------------------------------------------- checks
# nothing left to do for the same targets, and the final outputs are there
PATH="$BIN:$PATH" snakemake -n --cores 1 --configfile workflow/config/test.yaml \
    --config "results=$WORK/results" "data_dir=$WORK/data" > "$WORK/dry-run.log" 2>&1 \
    || fail "dry run after the workflow failed (see $WORK/dry-run.log)"
grep -q "Nothing to be done" "$WORK/dry-run.log" || fail "the workflow left jobs to do (see $WORK/dry-run.log)"
DATASETS=$("$BIN/python" -c 'import yaml; print(" ".join(yaml.safe_load(open("workflow/config/test.yaml"))["datasets"]))')
expected=(summary.csv claims.md claims.csv tables/table1.md tables/table3.md tables/agreement.md tables/realized.md
          plots/policy_distribution.png)
for d in $DATASETS; do expected+=("plots/pareto_$d.png" "plots/latency_$d.png" "plots/policy_blocks_$d.png"); done
for f in "${expected[@]}"; do
    [[ -s $WORK/results/$f ]] || fail "missing or empty: $f"
done
# every Slurm job completed, in the partition the profile gives its rule; the jobs Snakemake ran
# (all but the local target rule `all`) all went through Slurm
scontrol show job -o > "$WORK/slurm-jobs.txt" 2>&1 || fail "scontrol show job failed"
SLURM_CHECK=$("$BIN/python" - "$WORK/slurm-jobs.txt" "$WORK/snakemake.log" <<'PY'
import collections, re, sys
import yaml

profile = yaml.safe_load(open("workflow/profiles/slurm/config.yaml"))
default = profile["default-resources"]["slurm_partition"]
per_rule = {rule: values["slurm_partition"] for rule, values in (profile.get("set-resources") or {}).items()
            if values and "slurm_partition" in values}
jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in open(sys.argv[1]) if line.startswith("JobId=")]
jobs = [job for job in jobs if job.get("Comment", "").startswith("rule_")]  # not the srun check above
problems, per_partition = [], collections.Counter()
for job in jobs:
    rule = re.match(r"rule_([^_]+(?:_[^_]+)*?)(?:_wildcards_|$)", job.get("Comment", ""))
    rule = rule.group(1) if rule else "?"
    want = per_rule.get(rule, default)
    per_partition[job.get("Partition")] += 1
    if job.get("JobState") != "COMPLETED":
        problems.append(f"job {job['JobId']} ({rule}) {job.get('JobState')}")
    if job.get("Partition") != want:
        problems.append(f"job {job['JobId']} ({rule}) in partition {job.get('Partition')}, not {want}")
steps = re.findall(r"(\d+) of (\d+) steps", open(sys.argv[2]).read())
total = int(steps[-1][1]) if steps else 0
if len(jobs) < total - 1:
    problems.append(f"{len(jobs)} Slurm jobs for {total} Snakemake jobs")
print(f"{len(jobs)} Slurm jobs, all COMPLETED ({', '.join(f'{n} in {p}' for p, n in sorted(per_partition.items()))})"
      if not problems else "; ".join(problems[:5]))
sys.exit(1 if problems else 0)
PY
) || fail "Slurm jobs: $SLURM_CHECK"
say "$SLURM_CHECK"
OK_RUNS=$("$BIN/python" - "$WORK/results/summary.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{len(rows)} rows, {sum(row.get('status') == 'ok' for row in rows)} with status ok")
PY
)
[[ $OK_RUNS != 0\ * ]] || fail "summary.csv has no rows"
say "summary.csv: $OK_RUNS (one epoch on a few videos: the harness flags some runs degenerate)"
VERDICT=PASS
echo "PASS: slurm smoke: $JOBS jobs done in $((SECONDS - START)) s (Slurm $SLURM_VERSION, snakemake-executor-plugin-slurm $PLUGIN_VERSION, test config, $(date -u +%F))"
