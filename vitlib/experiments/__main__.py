"""Command line: python -m vitlib.experiments run experiments/<study>.yaml [options]

Several runs at once (`--jobs N`: one GPU each when there are several, else N processes sharing
the cores), or each run as a submitit job on a SLURM cluster (`--executor slurm`, see
vitlib/experiments/cluster.py); the skip/resume rules are the same either way.

A smoke test of a study on tiny settings, which never touches results/:

    python -m vitlib.experiments run experiments/ablation-pooling.yaml --output /tmp/smoke/runs/pool \
        --set dataset=digits --set img_size=16 --set steps=3 --set 'model_args={depth: 1}'

Exit status: 0 when every selected run is complete, skipped, or in use by another runner (two
runners may share a study: each skips what the other runs), 1 when any failed, 2 for a bad study
file or arguments (nothing ran) or a full disk, 130 when interrupted.
"""

import argparse
import functools
import sys

from vitlib.device import PRECISION_ENV, precision_from_env
from vitlib.fileio import write_error_message
from vitlib.keyvalue import parse_override
from vitlib.report.claims import CLAIM_IDS

from .cluster import run_on_executor
from .runner import declared_params, run_study, select
from .study import load_study, study_claims


def declared_or_none(notebook):
    """The parameters a notebook declares; () where it cannot be read (the run plan reports that)."""
    try:
        return declared_params(notebook)
    except (OSError, ValueError):
        return ()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitlib.experiments",
                                     description="Run the notebooks of a study file.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a study's notebooks, skipping finished runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("study", help="study file, e.g. experiments/cifar.yaml")
    run.add_argument("--dry-run", action="store_true",
                     help="say what would run, resume, be skipped or fail; execute nothing")
    run.add_argument("--list", action="store_true", help="list the study's runs and their parameters")
    run.add_argument("--only", action="append", default=[], metavar="GLOB",
                     help="only runs whose name matches this glob (repeatable), e.g. 'vit_s4-*'")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a parameter in every run whose notebook declares it (repeatable; "
                          "VALUE is YAML, e.g. steps=3 or 'model_args={depth: 1}')")
    run.add_argument("--output", default=None, metavar="DIR",
                     help="write the runs to DIR instead of the study's output, e.g. "
                          "/tmp/smoke/runs/cifar ({results} is then /tmp/smoke)")
    run.add_argument("--kernel", default=None,
                     help="Jupyter kernel name (default: a kernel of this Python interpreter)")
    run.add_argument("--quiet", action="store_true", help="don't echo the notebooks' own output")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="runs at once: one GPU each when there are several, else the CPU cores shared "
                          "out (the notebooks' output is then not echoed); with --executor, jobs in flight")
    run.add_argument("--executor", choices=("local", "slurm"), default=None,
                     help="submit each run as a submitit job: to SLURM, or as local processes")
    run.add_argument("--executor-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="a submitit parameter (repeatable), e.g. slurm_partition=gpu, gpus_per_node=1, "
                          "timeout_min=240")
    args = parser.parse_args(argv)

    try:
        overrides = dict(parse_override(text) for text in args.overrides)
        study = load_study(args.study, output=args.output, overrides=overrides)
        study_claims(study.claims, str(args.study), CLAIM_IDS)  # the report's ids, before any run
        env = precision_from_env()  # the one place the runner reads it; a bad value stops here, before any run
        if env is not None and "precision" not in overrides:
            declaring = [nb for nb in {run.notebook for run in study.runs} if "precision" in declared_or_none(nb)]
            if declaring:
                overrides["precision"] = env
                study = load_study(args.study, output=args.output, overrides=overrides)
                print(f"note: precision={env} from ${PRECISION_ENV}, as --set precision={env} (recorded in each "
                      f"run's overrides)", file=sys.stderr)
            else:
                print(f"note: ${PRECISION_ENV}={env} has no effect: no notebook of {args.study} declares "
                      "precision", file=sys.stderr)
        if args.list:
            print(study.header + "\n")
            defaults = {k: v for r in study.runs for k, v in r.defaults.items()}
            print("defaults (for notebooks that declare them): "
                  + " ".join(f"{k}={v}" for k, v in defaults.items()))
            if overrides:
                print(f"output {study.output}; --set (wins over the runs' values): "
                      + " ".join(f"{k}={v}" for k, v in overrides.items()))
            for r in select(study, args.only):
                print(f"{r.name}  {r.notebook}  " + " ".join(f"{k}={v}" for k, v in r.params.items()))
            return 0
        if args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs}: must be at least 1")
        executor_args = dict(parse_override(text) for text in args.executor_arg)
        if executor_args and args.executor is None:
            raise ValueError("--executor-arg needs --executor local or slurm")
        # the executor is chosen here: the runner's own threads, or submitit jobs (cluster.py)
        submit = (functools.partial(run_on_executor, executor=args.executor, executor_args=executor_args)
                  if args.executor is not None else None)
        summary = run_study(study, only=args.only, dry_run=args.dry_run, kernel_name=args.kernel,
                            show_output=not args.quiet, echo=lambda line: print(line, flush=True),
                            jobs=args.jobs, submit=submit)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except OSError as err:
        message = write_error_message(err, "run the same command again to continue")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
