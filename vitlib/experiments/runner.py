"""Run a study's notebooks through papermill, one run folder each, skipping finished runs.

Each run folder `<output>/<run>/` gets the executed notebook `<notebook name>.ipynb` and `run.json`,
the runner's record: status (running, complete, failed, interrupted), the study, the notebook, the
parameters it received, start and end times, duration, git commit and host. Everything else in the
folder belongs to the notebook.

Before anything runs, every selected run is planned from its folder:
- no folder: run it;
- run.json says complete with the same notebook and parameters: skip it;
- run.json says complete with other parameters: stop the whole study with an error (a finished
  result is never overwritten; use another `output:` or delete the folder);
- anything else is an interrupted or failed run. The runner's own files are removed; if the
  notebook left files of its own, the run resumes in place with `resume=True` when the notebook
  declares a `resume` parameter (and run.json shows the same parameters), otherwise the folder is
  moved aside to `<run>.stale-<time>` and the run starts fresh. Nothing is deleted silently.
- a parameter the notebook's `parameters` cell does not declare fails that run before it starts;
  so does a run.json that does not parse (it is named; nothing in that folder is touched).

A run executes holding `<output>/<run>.lock` (see fileio.file_lock; it names the runner's pid,
host and start time and is deleted when the run ends, however it ends). A second runner on the same
output skips a run whose lock is held, says who holds it, and counts it as locked: two runners may
share one study, each taking the runs the other has not. A lock left by a killed runner is free and
taken over. Under the lock each run is planned again, as the folder may have changed meanwhile.

Overrides (`--set`, see study.py) go to the runs whose notebook declares them and are part of the
parameters run.json records (and compares), so a smoke run's folder is never taken for a real run;
an override that no notebook of the study declares stops the study before anything runs. The
command each notebook records re-makes the run with the same --output and --set.

Notebooks run in a kernel of this very interpreter (see `kernel.python_kernel`).
"""

import concurrent.futures
import contextlib
import datetime
import difflib
import fnmatch
import json
import os
import platform
import queue
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from vitlib.fileio import FileLocked, file_lock, read_json, run_lock, write_json
from vitlib.keyvalue import parse_override
from vitlib.provenance import git_state

from .kernel import execute_notebook, kernel
from .params import annotated_types, assigned_names, type_problem
from .schedule import Summary, schedule
from .study import Run, Study

RUN_FILE = "run.json"


@dataclass
class Plan:
    run: Run
    action: str                                 # run | resume | skip | fail | conflict
    note: str                                   # why, for the log; the error for "fail"
    params: dict = field(default_factory=dict)  # what the notebook receives, out_dir included
    stale: Path = None                          # where an interrupted run's folder is moved


def select(study: Study, only=()) -> list:
    """The study's runs whose names match any of the glob patterns in `only` (all without)."""
    runs = [r for r in study.runs if not only or any(fnmatch.fnmatchcase(r.name, p) for p in only)]
    if not runs:
        raise ValueError(f"no run of {study.path} matches {' or '.join(only)}; "
                         f"runs: {', '.join(r.name for r in study.runs)}")
    return runs


def declared_params(notebook: Path) -> dict:
    """{name: declared type name, or None} of the names assigned in the notebook's cell tagged
    `parameters` (what papermill may override), in order."""
    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'")
    types = annotated_types(cells[0].source)
    return {name: types.get(name) for name in assigned_names(cells[0].source)}


def plan_study(study: Study, only=()) -> list:
    """Decide what happens to each selected run; raises if a finished run would be overwritten."""
    # notebook -> its parameter names, or the error reading it
    declared = {notebook: _declared(notebook) for notebook in dict.fromkeys(run.notebook for run in study.runs)}
    readable = [names for names in declared.values() if isinstance(names, dict)]
    known = {k for names in readable for k in names}
    unused = sorted({k for run in study.runs for k in run.defaults} - known)
    if unused and len(readable) == len(declared):
        raise ValueError(f"{study.path}: no notebook declares the default(s) {', '.join(unused)}")
    unknown = [_with_hint(k, sorted(known)) for k in study.overrides if k not in known]
    if unknown and len(readable) == len(declared):
        raise ValueError(f"--set {', '.join(unknown)}: no notebook of {study.path} declares it; "
                         f"they declare: {', '.join(sorted(known))}")
    plans = [_plan_run(run, declared[run.notebook]) for run in select(study, only)]
    conflicts = [p.note for p in plans if p.action == "conflict"]
    if conflicts:
        raise ValueError("finished runs would be overwritten (use another 'output:' in the study "
                         "or --output, or delete these folders):\n  " + "\n  ".join(conflicts))
    return plans


def _declared(notebook: Path):
    try:
        return declared_params(notebook)
    except (OSError, ValueError) as err:
        return err


def _plan_run(run: Run, declared) -> Plan:
    if isinstance(declared, Exception):
        return Plan(run, "fail", f"{type(declared).__name__}: {declared}")
    unknown = [k for k in run.params if k not in declared]
    if unknown or "out_dir" not in declared:
        problem = ("unknown parameter(s) " + ", ".join(_with_hint(k, declared) for k in unknown)
                   if unknown else "no 'out_dir' parameter")
        return Plan(run, "fail", f"ValueError: {problem} for {run.notebook}; "
                                 f"its parameters cell declares: {', '.join(declared)}")
    params = {k: v for k, v in run.defaults.items() if k in declared}
    overrides = {k: v for k, v in run.overrides.items() if k in declared}
    params = _jsonable({**params, **run.params, **overrides, "out_dir": str(run.folder)})
    wrong = [problem for k, v in params.items() if (problem := type_problem(k, v, declared[k]))]
    if wrong:  # what the notebook's own check would refuse, found before anything runs
        return Plan(run, "fail", f"ValueError: {'; '.join(wrong)} ({run.notebook.name}'s parameters cell)", params)
    try:
        record = _read_record(run.folder)
    except (OSError, ValueError) as err:
        return Plan(run, "fail", f"{type(err).__name__}: {err}; repair or delete it", params)
    same = (record.get("notebook") == str(run.notebook) and record.get("parameters") == params)
    if not run.folder.exists():
        return Plan(run, "run", "new", params)
    if record.get("status") == "complete":
        if same:
            return Plan(run, "skip", "complete", params)
        return Plan(run, "conflict", f"{run.folder}: {_difference(record, run, params)}", params)
    if not any(run.folder.iterdir()):
        return Plan(run, "run", "new", params)
    last = record.get("status") if record.get("status") in ("failed", "interrupted") else "did not finish"
    own = {RUN_FILE, run.notebook.name}
    if not [p for p in run.folder.iterdir() if p.name not in own]:
        return Plan(run, "run", f"last attempt {last}; running again", params)
    if same and "resume" in declared and "resume" not in params:
        return Plan(run, "resume", f"last attempt {last}; resuming in place", params)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    stale = run.folder.with_name(f"{run.folder.name}.stale-{stamp}")
    return Plan(run, "run", f"last attempt {last}; its folder is moved aside to {stale}", params, stale)


def _with_hint(name, declared):
    close = difflib.get_close_matches(name, declared, n=1)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def _difference(record, run, params):
    if record.get("notebook") != str(run.notebook):
        return f"it ran {record.get('notebook')}, the study now runs {run.notebook}"
    old = record.get("parameters", {})
    changes = [f"{k}: {old.get(k, '<unset>')!r} -> {params.get(k, '<unset>')!r}"
               for k in sorted(set(old) | set(params)) if old.get(k, "<unset>") != params.get(k, "<unset>")]
    return "finished with other parameters (" + ", ".join(changes) + ")"


def run_study(study: Study, *, only=(), dry_run=False, kernel_name=None, show_output=True,
              echo=print, jobs=1, submit=None) -> Summary:
    """Run (or with dry_run, describe) the selected runs; failures don't stop the rest.

    jobs: how many runs execute at once (threads, each driving its own kernel): one GPU each
    when there are several, else the CPU cores shared out (job_environments); the notebooks' own
    output is echoed only with jobs=1. submit: another way to execute the planned runs, called as
    submit(study, plans, summary, jobs, echo) (cluster.run_on_executor, bound to an executor by
    the command line, runs each as a submitit job). Whichever way runs execute, each is planned
    again under its lock and the skip/resume rules are the same."""
    plans = plan_study(study, only)
    total, summary = len(plans), Summary()
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    if study.overrides or study.output_given:
        echo(f"output {study.output}" + "".join(f"; --set {k}={_yaml(v)}" for k, v in study.overrides.items())
             + ("" if study.output_given else " (the study's own output: no --output given)"))
    if dry_run:
        for i, p in enumerate(plans, 1):
            what = {"run": "would run", "resume": "would resume", "skip": "would skip",
                    "fail": "would fail"}[p.action]
            echo(f"[{i}/{total}] {p.run.name} {what}: {p.note}")
        counts = {a: sum(p.action == a for p in plans) for a in ("run", "resume", "skip", "fail")}
        echo(f"would run {counts['run'] + counts['resume']}, skip {counts['skip']}, "
             f"fail {counts['fail']}")
        return summary
    if submit is not None:
        submit(study, plans, summary, jobs, echo)
    else:
        git = git_state()
        lock = threading.Lock()

        def say(line):  # one whole line at a time from parallel jobs
            with lock:
                echo(line)

        environments = job_environments(jobs)
        slots = queue.SimpleQueue()
        for environment in environments:
            slots.put(environment)

        def attempt(i, p):
            environment = slots.get()
            try:
                _attempt(f"[{i}/{total}] {p.run.name}", p, study, kernel_name, git, show_output and jobs == 1,
                         say, summary, environment)
            finally:
                slots.put(environment)

        with kernel(kernel_name) as kernel_name:
            if jobs > 1:
                say(f"{jobs} runs at a time: " + "; ".join(
                    " ".join(f"{k}={v}" for k, v in env.items()) or "as this process" for env in environments))
            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
                def start(i, p):  # one job: in this thread, so that Ctrl-C reaches the run (recorded interrupted)
                    if jobs > 1:
                        return pool.submit(attempt, i, p)
                    attempt(i, p)
                    done = concurrent.futures.Future()
                    done.set_result(None)
                    return done

                schedule(plans, jobs, start, lambda future: future.result(), summary, say,
                         wait=lambda futures: concurrent.futures.wait(futures, return_when="FIRST_COMPLETED"))
    locked = f", locked {len(summary.locked)} (in use by another runner)" if summary.locked else ""
    echo(f"done {len(summary.done)}, skipped {len(summary.skipped)}{locked}, failed {len(summary.failed)}")
    for name, error in summary.failed:
        echo(f"  failed {name}: {error}")
    return summary


def job_environments(jobs: int) -> list:
    """The environment each of `jobs` parallel slots gives its kernels: one GPU per slot, round
    robin, when the machine has several (CUDA_VISIBLE_DEVICES); else the CPU cores shared out
    (OMP_NUM_THREADS, which torch's thread pool follows), so N runs don't oversubscribe them."""
    if jobs == 1:
        return [{}]
    gpus = visible_gpus()
    if len(gpus) > 1:
        return [{"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]} for slot in range(jobs)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return [{"OMP_NUM_THREADS": str(threads)} for _ in range(jobs)]


def visible_gpus() -> list:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's, else torch's count."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _attempt(tag, p: Plan, study: Study, kernel_name, git, show_output, echo, summary: Summary, environment):
    """One run under its lock: planned again as its folder is now, then skipped or executed; the
    outcome goes to `summary`."""
    with contextlib.ExitStack() as held:
        if p.action != "fail":
            try:
                killed = held.enter_context(file_lock(run_lock(p.run.folder), wait=False))
            except FileLocked as err:
                echo(f"{tag} skipped: in use by {err.holder} ({err.path})")
                summary.locked.append(p.run.name)
                return
            if killed:
                echo(f"{tag}: its runner ({killed}) was killed; taking the run over")
            p = _plan_run(p.run, _declared(p.run.notebook))  # as the folder is now
        if p.action == "skip":
            echo(f"{tag} skipped (complete)")
            summary.skipped.append(p.run.name)
            return
        if p.action in ("fail", "conflict"):
            echo(f"{tag} failed: {p.note}")
            summary.failed.append((p.run.name, p.note))
            return
        echo(f"{tag} running {p.run.notebook} ({p.note})")
        start = time.monotonic()
        error = _execute(p, study, kernel_name, git, show_output, environment)
        took = _duration(time.monotonic() - start)
    if error:
        echo(f"{tag} failed after {took}: {error}")
        summary.failed.append((p.run.name, error))
    else:
        echo(f"{tag} done in {took}")
        summary.done.append(p.run.name)


def _execute(p: Plan, study: Study, kernel_name: str, git: dict, show_output: bool, environment=None):
    """Run one notebook into its folder; returns None on success, else a one-line error."""
    import papermill  # for its error type; imported here: notebooks import vitlib.experiments

    folder, executed = p.run.folder, p.run.folder / p.run.notebook.name
    if p.stale is not None:
        folder.rename(p.stale)
    for own in (folder / RUN_FILE, executed):
        own.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    injected = {**p.params, "resume": True} if p.action == "resume" else p.params
    record = {"status": "running", "study": study.name, "study_file": str(study.path),
              "run": p.run.name, "notebook": str(p.run.notebook), "executed_notebook": str(executed),
              "parameters": p.params, "overrides": {k: p.params[k] for k in study.overrides if k in p.params},
              "resumed": p.action == "resume", "started": _now(),
              **git, "host": platform.node(), "python": sys.version.split()[0], "kernel": kernel_name}
    _write_record(folder, record)
    start, error = time.monotonic(), None
    # the kernel's own environment: the command that re-makes this run (the notebook records it
    # in result.json) and the job slot's GPU or threads; the runner's environment is untouched
    env = {**(environment or {}), "VITLIB_COMMAND": command_line(study, p.run.name)}
    try:
        execute_notebook(p.run.notebook, executed, injected, kernel_name, show_output=show_output, env=env)
    except KeyboardInterrupt:
        _write_record(folder, {**record, "status": "interrupted", "ended": _now(),
                               "duration_s": round(time.monotonic() - start, 1)})
        raise
    except papermill.PapermillExecutionError as err:
        error = _one_line(f"{err.ename}: {err.evalue}")
    except Exception as err:  # kernel died, timeout, unreadable notebook: the run failed, go on
        error = _one_line(f"{type(err).__name__}: {err}")
    _write_record(folder, {**record, "status": "failed" if error else "complete", "ended": _now(),
                           "duration_s": round(time.monotonic() - start, 1),
                           **({"error": error} if error else {})})
    return error


def command_line(study: Study, run_name: str) -> str:
    """The batch-runner command that re-makes one run of the study, overrides included."""
    words = ["python", "-m", "vitlib.experiments", "run", str(study.path)]
    if study.output_given:
        words += ["--output", str(study.output)]
    for key, value in study.overrides.items():
        words += ["--set", f"{key}={_yaml(value)}"]
    return " ".join(shlex.quote(w) for w in [*words, "--only", run_name])


def _yaml(value) -> str:
    """A --set value as the command line writes it (read back by study.parse_override)."""
    if isinstance(value, str) and value and parse_override(f"x={value}")[1] == value:
        return value
    return json.dumps(value)  # JSON is YAML: quoted strings, lists, mappings, numbers, null


def _read_record(folder: Path) -> dict:
    """run.json, {} when there is none; ValueError naming it when it does not parse."""
    path = folder / RUN_FILE
    return read_json(path) if path.exists() else {}


def _write_record(folder: Path, record: dict):
    write_json(folder / RUN_FILE, record, indent=1)  # atomic: a killed runner never leaves half a run.json


def _jsonable(params: dict) -> dict:
    """Params as run.json will read back (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(params))


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"
