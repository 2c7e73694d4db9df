"""What every benchmark shares: the environment a number was measured in, timing that waits for the
GPU, peak memory, out-of-memory detection, the CSV writer and the table printer.

Every CSV row carries the environment columns (gpu, torch, commit, date) so that a number copied
out of `results/bench/` still says where it came from.
"""
import csv
import datetime
import gc
import io
import math
import sys
import time
from pathlib import Path

import torch

from vitlib.device import device_name, synchronize  # noqa: F401 (the benchmarks import synchronize from here)
from vitlib.fileio import atomic_write_text
from vitlib.provenance import short_commit

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
ENV_COLUMNS = ("gpu", "torch", "commit", "date")


def progress(message):
    """A line flushed at once, so that a run killed by `timeout` shows the phase it was in."""
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def parse_list(text, allowed, name):
    """'a,b' -> ['a', 'b'], each checked against `allowed` (ValueError names the flag)."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    bad = [item for item in items if item not in allowed]
    if not items or bad:
        raise ValueError(f"{name}={text!r}: {', '.join(bad) or 'empty'} not allowed; "
                         f"choose a comma-separated list of {', '.join(allowed)}")
    return items


def require_timm(asked):
    """ValueError naming the flag that asked for timm (`asked`, e.g. "--impl timm") where it is not installed."""
    try:
        import timm  # noqa: F401
    except ImportError:
        raise ValueError(f"{asked} but timm is not installed: pip install timm") from None


class ChildRunFailed(RuntimeError):
    """A command a benchmark ran for one measurement (bench.throughput, `vitlib train`) exited with an
    error; the message carries the end of its stderr."""


def run_cli(main, errors=(ValueError,)):
    """A benchmark's command line: main(), with bad input (`errors`) or a failed child run as
    `error: ...` and exit status 1 instead of a traceback."""
    try:
        main()
    except (*errors, ChildRunFailed) as error:
        sys.exit(f"error: {error}")


def split_passthrough(argv):
    """A command line `OURS -- PASSED` as (ours, passed): the arguments after `--` go to the command a
    script runs for each measurement (bench.throughput, `vitlib train`). argv None: sys.argv's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])


def refuse_passed(passed, flags, why):
    """ValueError naming each of `flags` found among the passed-through arguments (`--flag` or
    `--flag=value`): the script sets them itself (`why` says how)."""
    clash = [a for a in passed if a.split("=")[0] in flags]
    if clash:
        raise ValueError(f"{', '.join(clash)} after '--': this script sets it {why}")


def check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value!r}")


def environment(device):
    """The environment columns: the hardware (vitlib.device.device_name: the GPU's name, or "cpu (...)"
    naming the CPU and its kind), torch version, git commit, UTC date."""
    gpu = device_name(device)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"gpu": gpu, "torch": torch.__version__, "commit": short_commit(), "date": date}


def resolve_out(out, name, suffix=".csv", folder="bench"):
    """`--out` as given, or results/<folder>/<name><suffix>."""
    return Path(out) if out else RESULTS / folder / f"{name}{suffix}"


def write_csv(rows, path, columns, env):
    """Write `rows` (dicts) with `columns` then the environment columns, atomically (a run killed
    mid-write keeps the previous rows); the folder is created. `env` fills the environment columns
    of every row, except where a row has its own (rows of runs from several sessions)."""
    path = Path(path)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*columns, *ENV_COLUMNS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**{c: format_value(row.get(c, "")) for c in columns},
                         **env, **{k: row[k] for k in ENV_COLUMNS if k in row}})
    atomic_write_text(path, text.getvalue())
    return path


def format_value(value):
    """Floats to 4 significant digits; everything else as it is."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return value


def print_table(rows, columns, title=None, file=None):
    """A plain aligned text table (no dependency), one row per dict."""
    file = file or sys.stdout
    cells = [[str(format_value(row.get(c, ""))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))
    if title:
        print(title, file=file)
    print(line(columns), file=file)
    print(line(["-" * w for w in widths]), file=file)
    for r in cells:
        print(line(r), file=file)
    file.flush()


def wall_seconds(fn, calls, device):
    """Wall-clock seconds for `calls` calls of fn(), GPU work included (for warm-up / compile)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def ms_per_call(fn, calls, device):
    """Mean milliseconds per call of fn() over `calls` back-to-back calls: CUDA events around the
    whole loop on a GPU (launches stay asynchronous, as in training), perf_counter on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return 1000.0 * wall_seconds(fn, calls, device) / calls
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def reset_peak_memory(device):
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device):
    """Peak allocated CUDA memory since the last reset, in GiB; 'n/a' on the CPU."""
    if torch.device(device).type != "cuda":
        return "n/a"
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def free_memory(device):
    """Collect garbage and release cached blocks between measurements, so one does not tax the next."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()
