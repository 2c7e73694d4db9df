# Sourced by the bench/gpu_*.sh scripts: one bounded step of a GPU session.
# The caller sets LOG, BUDGET_S, START (and optionally RESERVE_S, seconds kept back for later steps).
#
# step NAME MAX_SECONDS MIN_SECONDS COMMAND...: run COMMAND for at most min(MAX, budget left), or
# skip it when less than MIN_SECONDS of the budget is left; a non-zero exit sets FAILED=1.
FAILED=${FAILED:-0}
step() {
    local name=$1 cap=$2 min=$3
    shift 3
    local left=$((BUDGET_S - ${RESERVE_S:-0} - ($(date +%s) - START)))
    local limit=$((cap < left ? cap : left))
    if ((left < min)); then
        echo "=== $name: skipped, ${left} s of the budget left, needs ${min} s" | tee -a "$LOG"
        return 0
    fi
    local command="$*"
    command=${command//$'\n'/ }
    echo "=== $name: up to ${limit} s, at $(($(date +%s) - START)) s: ${command:0:300}" | tee -a "$LOG"
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    local note=""
    if ((rc == 124 || rc == 137)); then note=" (timed out)"; fi
    if ((rc != 0)); then FAILED=1; fi
    echo "=== $name: exit $rc$note after $(($(date +%s) - START)) s" | tee -a "$LOG"
    tail -n 5 "$LOG" | grep -v '^===' || true
}
