"""Where a CPU training step's time goes: torch.profiler over a few steps of one bench.throughput
config (the same model, AdamW and step as its rows), each operator's self time per step and its
share of the step, and for the matrix products (mm, addmm, bmm, baddbmm, from their input shapes)
the GFLOP/s they ran at, also as a fraction of the same run's 2048^3 matrix-product rate in that
precision: how far the step is from being bound by its matrix products, and what else costs time.
Convolutions get their time and share but no GFLOP/s (their strides are not among the shapes the
profiler records).

    python -m bench.profile_step --config ti4_d6_32 --precision bf16
    python -m bench.profile_step --config r10n_32 --precision bf16 --memory-format channels_last
    python -m bench.profile_step --tiny --steps 1 --warmup 1 --out /tmp/p.csv

Rows: the `--top` operators by self time, then one `other` row for the rest; the shares add up to 1
over the operators' self times, which leave out the profiler's own cost. The step's wall time under
the profiler is in every row (`step_ms`), and bench.throughput's own timing is the one to quote for
speed. Output: results/bench/profile_<cpu kind>_<config>_<precision>.csv unless `--out`; beside it,
`..._copies.csv` breaks `aten::copy_` down by the operator each copy ran in and the copied shape
(copy_table): which copies are casts, which are layouts, which are a bias broadcast.
"""
import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/profile_step.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.profiler import ProfilerActivity, profile

from bench.common import (
    check_positive,
    environment,
    print_table,
    progress,
    require_timm,
    resolve_out,
    run_cli,
    write_csv,
)
from bench.throughput import (
    CONFIGS,
    IMPLS,
    MEMORY_FORMATS,
    PRECISIONS,
    Settings,
    build_model,
    make_adamw,
    make_train_step,
    matmul_gflops,
    memory_format,
)
from vitlib.device import cpu_kind, keep_freed_memory, resolve_precision

COLUMNS = ("config", "impl", "precision", "memory_format", "batch", "op", "calls_per_step", "ms_per_step", "share",
           "gflops_per_s", "matmul_fraction", "step_ms", "matmul_rate_gflops")


def matmul_flops(name, shapes):
    """FLOPs of one matrix-product call from its input shapes (2 m k n per product), else 0."""
    try:
        if name == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return 2 * m * k * n
        if name == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return 2 * m * k * n
        if name == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return 2 * b * m * k * n
        if name == "aten::baddbmm":
            (b, m, k), (_, _, n) = shapes[1], shapes[2]
            return 2 * b * m * k * n
    except (IndexError, TypeError, ValueError):  # a shape the profiler did not record
        return 0
    return 0


def op_table(events, steps, top):
    """[(op, calls, self ms, flops)] per step, the `top` longest then `other`."""
    ops = {}
    for event in events:
        calls, ms, flops = ops.get(event.name, (0, 0.0, 0))
        ops[event.name] = (calls + 1, ms + event.self_cpu_time_total / 1000.0,
                           flops + matmul_flops(event.name, event.input_shapes))
    ranked = sorted(ops.items(), key=lambda item: -item[1][1])
    rows = [(name, calls / steps, ms / steps, flops / steps) for name, (calls, ms, flops) in ranked[:top]]
    rest = ranked[top:]
    if rest:
        rows.append(("other", sum(c for _, (c, _, _) in rest) / steps, sum(m for _, (_, m, _) in rest) / steps,
                     sum(f for _, (_, _, f) in rest) / steps))
    return rows


# what a copy is made by, rather than the operator that made it: casts, clones and views that copy
WRAPPERS = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous", "aten::reshape")
COPY_COLUMNS = ("config", "impl", "precision", "memory_format", "batch", "within", "calls_per_step", "ms_per_step",
                "share_of_copies", "shape")


def copy_table(events, steps):
    """[(within, shape, calls, self ms)] per step of `aten::copy_`, by the operator it ran inside (its
    nearest caller that is not a cast, clone, reshape or contiguous: `aten::addmm` copying the bias
    into the output, `aten::add` casting a bf16 operand, an autograd node such as `ToCopyBackward0`)
    and the copied shape, longest first. A copy called from Python directly is `within` "python"."""
    copies = {}
    for event in events:
        if event.name != "aten::copy_":
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name in WRAPPERS:
            parent = parent.cpu_parent
        key = (parent.name if parent is not None else "python",
               "x".join(map(str, event.input_shapes[0])) if event.input_shapes and event.input_shapes[0] else "")
        calls, ms = copies.get(key, (0, 0.0))
        copies[key] = (calls + 1, ms + event.self_cpu_time_total / 1000.0)
    ranked = sorted(copies.items(), key=lambda item: -item[1][1])
    return [(within, shape, calls / steps, ms / steps) for (within, shape), (calls, ms) in ranked]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ti4_d6_32", help=f"one of {', '.join(c for c in CONFIGS if c != 'tiny')}")
    p.add_argument("--impl", default="vitlib", help=f"one of {', '.join(IMPLS[:4])}")
    p.add_argument("--precision", default="auto", help=f"one of {', '.join(PRECISIONS)}")
    p.add_argument("--memory-format", default="contiguous", help=f"one of {', '.join(MEMORY_FORMATS)}")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: the config's)")
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--warmup", type=int, default=3, help="steps before the profiled ones")
    p.add_argument("--top", type=int, default=25, help="operators listed by name; the rest make one row")
    p.add_argument("--device", default="cpu", help="cpu (the profile reads the CPU's operator times)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide ViT on 16 px images (CPU tests)")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/profile_<cpu kind>_<config>_"
                                               "<precision>.csv)")
    args = p.parse_args(argv)
    if args.device != "cpu":
        raise ValueError(f"--device={args.device!r}: this profile reads CPU operator times; only 'cpu' is allowed")
    args.device = torch.device("cpu")
    if args.tiny:
        args.config = "tiny"
    for name, value, allowed in (("config", args.config, CONFIGS), ("impl", args.impl, IMPLS[:4]),
                                 ("precision", args.precision, PRECISIONS),
                                 ("memory-format", args.memory_format, MEMORY_FORMATS)):
        if value not in allowed:
            raise ValueError(f"--{name}={value!r} is not supported; allowed: {', '.join(allowed)}")
    check_positive(steps=args.steps, warmup=args.warmup, top=args.top, **({"batch": args.batch} if args.batch
                                                                         is not None else {}))
    args.precision = resolve_precision(args.device, args.precision)  # bf16 where it is emulated: an error here
    args.batch = args.batch or CONFIGS[args.config][3]
    if args.impl == "timm":
        require_timm("--impl timm")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    out = resolve_out(args.out, f"profile_{cpu_kind()}_{args.config}_{args.precision}")
    env = environment(device)
    keep_freed_memory()  # as fit and bench.throughput run
    rate = matmul_gflops(args.precision, device)
    progress(f"profile of {args.config} {args.impl} {args.precision} batch {args.batch} on {env['gpu']}; "
             f"2048^3 matrix product {rate:.1f} GFLOP/s; CSV {out}")
    _, img_size, num_classes, _, _ = CONFIGS[args.config]
    settings = Settings(precision=args.precision, memory_format=args.memory_format)
    model = build_model(args.impl, args.config).to(device, memory_format=memory_format(settings)).train()
    opt = make_adamw(model, settings, device)
    step = make_train_step(model, opt, settings, device)
    x = torch.randn(args.batch, 3, img_size, img_size).contiguous(memory_format=memory_format(settings))
    y = torch.randint(num_classes, (args.batch,))
    for _ in range(args.warmup):
        step(x, y)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step(x, y)
        step_ms = (time.perf_counter() - start) * 1000.0 / args.steps
    table = op_table(prof.events(), args.steps, args.top)
    total = sum(ms for _, _, ms, _ in table)
    rows = []
    for op, calls, ms, flops in table:
        gflops = flops / (ms / 1000.0) / 1e9 if flops and ms else ""
        rows.append(dict(config=args.config, impl=args.impl, precision=args.precision,
                         memory_format=args.memory_format, batch=args.batch, op=op, calls_per_step=calls,
                         ms_per_step=ms, share=ms / total, gflops_per_s=gflops,
                         matmul_fraction=gflops / rate if gflops else "", step_ms=step_ms, matmul_rate_gflops=rate))
    write_csv(rows, out, COLUMNS, env)
    copies = copy_table(prof.events(), args.steps)
    copies_ms = sum(ms for *_, ms in copies)
    copy_rows = [dict(config=args.config, impl=args.impl, precision=args.precision, memory_format=args.memory_format,
                      batch=args.batch, within=within, shape=shape, calls_per_step=calls, ms_per_step=ms,
                      share_of_copies=ms / copies_ms) for within, shape, calls, ms in copies]
    copies_out = out.with_name(f"{out.stem}_copies{out.suffix}")
    write_csv(copy_rows, copies_out, COPY_COLUMNS, env)
    matmul_ms = sum(ms for _, _, ms, flops in table if flops)
    matmul_gflop = sum(flops for *_, flops in table) / 1e9
    summary = "matrix products (mm, addmm, bmm, baddbmm; convolutions are not counted): " + (
        f"{matmul_ms / total:.0%} of the operators' time, at {matmul_gflop / (matmul_ms / 1000.0):.0f} GFLOP/s "
        f"({matmul_gflop / (matmul_ms / 1000.0) / rate:.0%} of the 2048^3 rate)" if matmul_ms else "none")
    print_table(copy_rows[:10], ("within", "shape", "calls_per_step", "ms_per_step", "share_of_copies"),
                title=f"\naten::copy_ by the operator it ran in ({copies_ms:.1f} ms per step; all {len(copy_rows)} "
                      f"rows in {copies_out})")
    print_table(rows, ("op", "calls_per_step", "ms_per_step", "share", "gflops_per_s", "matmul_fraction"),
                title=f"\n{args.config} {args.impl} {args.precision} batch {args.batch}, {step_ms:.1f} ms per step "
                      f"under the profiler; {summary}; written to {out}")
    return rows


if __name__ == "__main__":
    run_cli(main)
