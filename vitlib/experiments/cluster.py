"""A study's runs as submitit jobs (https://github.com/facebookincubator/submitit): on a SLURM
cluster (executor "slurm") or as processes on this machine (executor "local", how the tests run
it). Each job is the batch runner itself on one run (`run_one`), so a job plans its run again under
the run's lock and follows the same skip/resume rules as `run_study` on one machine; this process
submits at most `jobs` at a time, waits, and merges what each job reports into one summary.
Jobs log to <output>/.submitit/. Interrupting this process leaves submitted jobs running (cancel
them with the cluster's own tools); the next run of the same command skips what they finished.

    python -m vitlib.experiments run experiments/cifar.yaml --executor slurm --jobs 16 \\
        --executor-arg slurm_partition=gpu --executor-arg gpus_per_node=1 --executor-arg timeout_min=240
"""
import glob
import time
from pathlib import Path

from .schedule import schedule
from .study import Study, load_study

EXECUTORS = ("local", "slurm")
DEFAULTS = {"timeout_min": 24 * 60}  # submitit needs a time limit; the longest study run fits a day


def run_one(study_path, output, overrides, name):
    """The job: the runner on run `name` of the study (as the submitting command loaded it)."""
    from .runner import run_study

    study = load_study(study_path, output=output, overrides=overrides)
    return run_study(study, only=[glob.escape(name)], echo=lambda line: print(line, flush=True))


def run_on_executor(study: Study, plans, summary, jobs, echo, *, executor, executor_args=None, poll_s=2.0):
    """Submit one job per planned run (at most `jobs` at once, each after the runs it reads) and
    merge their summaries into `summary`: run_study's `submit`, bound to an executor ("local" or
    "slurm") and its submitit parameters (slurm_partition, timeout_min, gpus_per_node, ...)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not supported; allowed: {', '.join(EXECUTORS)}")
    try:
        import submitit
    except ImportError:
        raise RuntimeError("--executor needs submitit: "
                           "pip install 'vitlib[cluster]' (or pip install submitit)") from None
    folder = Path(study.output) / ".submitit"
    pool = submitit.AutoExecutor(folder=folder, cluster=executor)
    pool.update_parameters(**{**DEFAULTS, **(executor_args or {})})
    # absolute paths: a job starts in its own working directory on the cluster
    output = str(Path(study.output).resolve()) if study.output_given else None
    names = {}  # job -> run name

    def start(i, plan):
        job = pool.submit(run_one, str(Path(study.path).resolve()), output, dict(study.overrides), plan.run.name)
        echo(f"[{i}/{len(plans)}] {plan.run.name}: submitted as {executor} job {job.job_id} (log {folder})")
        names[job] = plan.run.name
        return job

    def finish(job):
        name = names[job]
        try:
            result = job.result()
        except Exception as err:  # the job itself failed (not the notebook: that is in its summary)
            error = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            echo(f"{name}: job {job.job_id} failed: {error}")
            summary.failed.append((name, f"job {job.job_id}: {error}"))
            return
        for part in ("done", "skipped", "locked", "failed"):
            getattr(summary, part).extend(getattr(result, part))
        echo(f"{name}: job {job.job_id} finished")

    schedule(plans, jobs, start, finish, summary, echo,
             wait=lambda jobs: time.sleep(poll_s))  # a cluster job is polled: no call blocks on it
    return summary
