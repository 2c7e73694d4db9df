"""Training throughput of vitlib's models against timm's of the same shape (`VisionTransformer`;
for the CIFAR ResNets timm's `ResNet` with the same 3x3 stem and widths): same batch, same random
data already on the device, same run. One training step is forward + backward + AdamW step, in the
precision asked for (bf16 autocast with fp32 master weights, or fp32).

    python -m bench.throughput                                    # GPU: eager, s4_32 and b16_224
    python -m bench.throughput --configs s4_32 --compile none,default
    python -m bench.throughput --device cpu --precision fp32,bf16 --out results/bench/cpu_throughput.csv
    python -m bench.throughput --device cpu --configs ti4_d6_32 --impls vitlib --batch 32,64,128,256 --threads 1,2
    python -m bench.throughput --tiny --device cpu --steps 2 --warmup 1 --out /tmp/t.csv

On the CPU (`--device cpu`) the default configs are the CPU-sized models of the speedrun and the
study (ViT-Ti and ViT-S widths at depth 6 on 32 px, ResNet-18 and a narrow ResNet-10); each row also
gives the achieved GFLOP/s (3 x forward FLOPs x images/s) and its fraction of the same run's own
2048^3 matrix-product rate in that precision and thread count (the ceiling a training step can
approach). bf16 rows on a CPU without native bf16 are recorded as skipped (emulated bf16 is several
times slower than fp32 there). `--batch`, `--threads` and `--memory-format` take lists: the sweep
that picks the CPU defaults (bench/README.md).

Each (config, impl, compile mode) gives images/s, ms per step, MFU = 3 x forward FLOPs per image
(vitlib.count_flops) x images/s / peak (989 TFLOP/s, dense bf16 of an H100 / H200 SXM), peak
memory and compile seconds (warm-up time beyond that of as many steady steps). "vitlib-best" is
vitlib with the settings expected to be fastest (the --best-* flags); its speed_vs_timm compares
with the fastest timm row of its config, the others with timm at the same compile mode.
"""
import argparse
import contextlib
import itertools
import math
import statistics
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    check_positive,
    environment,
    free_memory,
    is_out_of_memory,
    ms_per_call,
    parse_list,
    peak_memory_gib,
    print_table,
    progress,
    require_timm,
    reset_peak_memory,
    resolve_out,
    run_cli,
    wall_seconds,
    write_csv,
)
from vitlib import count_flops, create_model
from vitlib.device import (
    configure_backends,
    cpu_has_native_bf16,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from vitlib.train import TrainConfig
from vitlib.train.step import make_optimizer, train_step

# name: (vitlib model, img_size, num_classes, default batch, shape overrides)
NARROW_RESNET = dict(blocks=(1, 1, 1, 1), widths=(32, 64, 128, 256))  # ResNet-10, widths 32-256
CONFIGS = {
    "s4_32": ("vit_s4", 32, 10, 512, {}),        # ViT-S/4 on 32 x 32 images (CIFAR), 65 tokens
    "b16_224": ("vit_b16", 224, 1000, 256, {}),  # ViT-B/16 on 224 x 224 images (ImageNet), 197 tokens
    # CPU sizes: the ViT-Ti and ViT-S widths cut to 6 blocks, 4 x 4 patches of 32 px images
    "ti4_d6_32": ("vit_ti4", 32, 10, 128, dict(depth=6)),   # D 192, 3 heads, MLP 768; 2.7M params
    "s4_d6_32": ("vit_s4", 32, 10, 128, dict(depth=6)),     # D 384, 6 heads, MLP 1536; 10.7M params
    "r18_32": ("resnet18_cifar", 32, 10, 128, {}),          # 11.2M params, 1.11 GFLOPs forward
    "r10n_32": ("resnet18_cifar", 32, 10, 128, NARROW_RESNET),
    # the laptop study's ViT and ResNet (experiments/laptop.yaml): 16 px, 16 tokens
    "ti4_d128_16": ("vit_ti4", 16, 10, 128, dict(depth=6, embed_dim=128, num_heads=4, mlp_dim=512)),
    "r10n_16": ("resnet18_cifar", 16, 10, 128, NARROW_RESNET),
    "tiny": ("vit_ti4", 16, 10, 8, dict(depth=2, embed_dim=64, num_heads=2, mlp_dim=128)),  # CPU tests
}
GPU_CONFIGS, CPU_CONFIGS = "s4_32,b16_224", "ti4_d6_32,s4_d6_32,r18_32,r10n_32"
# vitlib as a user builds it (attn_impl "auto"), with each attention kernel named, timm, and
# vitlib with the settings expected to be fastest on a GPU
IMPLS = ("vitlib", "vitlib-sdpa", "vitlib-explicit", "timm", "vitlib-best")
KERNEL_IMPLS = {"vitlib-sdpa": "sdpa", "vitlib-explicit": "explicit"}  # ViTs only
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
SCOPES = ("model", "step")
ADAMW_KINDS = ("fused", "fused-capturable", "foreach")
BACKENDS = ("inductor", "aot_eager", "eager")  # the last two trace without generating kernels (tests)
COLUMNS = ("config", "impl", "compile", "precision", "batch", "threads", "memory_format", "images_per_s",
           "spread", "step_ms", "gflops_per_s", "matmul_fraction", "mfu", "peak_mem_gib", "compile_s", "speed_vs_timm",
           "vs_timm_paired", "vs_timm_min", "vs_timm_max", "settings", "status")


@dataclass(frozen=True)
class Settings:
    compile: str = "none"      # torch.compile mode; "none" runs eagerly
    scope: str = "model"       # "model": compile the model; "step": forward, backward and opt.step in one
    adamw: str = "fused"       # AdamW kernels on CUDA (the CPU keeps torch's default)
    tf32: bool = False         # vitlib.device.configure_backends: TF32 matmuls/convs, cudnn.benchmark
    backend: str = "inductor"
    precision: str = "fp32"    # "bf16": autocast, fp32 master weights; "fp32"
    memory_format: str = "contiguous"  # of the model and the input batch ("channels_last": NHWC)

    def describe(self):
        return f"scope={self.scope} adamw={self.adamw} tf32={'on' if self.tf32 else 'off'}" + (
            f" backend={self.backend}" if self.backend != "inductor" else "")


def build_model(impl, config):
    name, img_size, num_classes, _, overrides = CONFIGS[config]
    if impl in KERNEL_IMPLS:
        overrides = {**overrides, "attn_impl": KERNEL_IMPLS[impl]}
    model = create_model(name, num_classes=num_classes, img_size=img_size, **overrides)
    if impl == "timm" and name.startswith("resnet"):  # timm's ResNet with the CIFAR stem: 3x3/1, no max-pool
        from timm.models.resnet import BasicBlock, ResNet
        widths = tuple(stage[0].conv1.out_channels for stage in model.stages)
        timm_model = ResNet(BasicBlock, [len(stage) for stage in model.stages], num_classes=num_classes,
                            channels=widths, stem_width=widths[0])
        timm_model.conv1 = torch.nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        timm_model.bn1 = torch.nn.BatchNorm2d(widths[0])
        timm_model.maxpool = torch.nn.Identity()
        first = timm_model.layer1[0]
        if first.conv1.in_channels != widths[0]:  # timm's stem is always 64 wide: make it widths[0]
            first.conv1 = torch.nn.Conv2d(widths[0], widths[0], 3, 1, 1, bias=False)
            first.downsample = None
        return timm_model
    if impl == "timm":  # the same shape; timm uses F.scaled_dot_product_attention by default
        from timm.models.vision_transformer import VisionTransformer as TimmViT
        model = TimmViT(img_size=img_size, patch_size=model.patch_size, embed_dim=model.embed_dim,
                        depth=len(model.blocks), num_heads=model.num_heads,
                        mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim,
                        num_classes=num_classes)
    return model


# fit's step on plain labels: no smoothing, clipping nor EMA
STEP_CONFIG = TrainConfig(lr=1e-4, weight_decay=0.05, label_smoothing=0.0, clip_grad=0.0, ema_decay=0.0)


def make_adamw(model, settings, device):
    """AdamW with fp32 state: fit's (vitlib.train.step.make_optimizer: fused kernels) unless the
    row asks for others. Inside a compiled step the hand-fused kernel stays one opaque call, while
    "foreach" is lowered by inductor into a few generated kernels (the compiled optimiser)."""
    if settings.adamw == "fused":
        return make_optimizer(model, STEP_CONFIG, device)
    kernels = {"fused-capturable": dict(fused=True, capturable=True), "foreach": dict(foreach=True)}[settings.adamw]
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, **kernels)


def make_train_step(model, opt, settings, device):
    """step(x, y) -> detached loss; compiled as `settings` says."""
    bf16 = settings.precision == "bf16"
    compiled = settings.compile != "none"
    options = dict(backend=settings.backend)
    if settings.backend == "inductor":
        options["mode"] = settings.compile
    net = torch.compile(model, **options) if compiled and settings.scope == "model" else model

    def step_fn(x, y):  # x: (B, C, H, W), y: (B,); fit's train_step, the autocast made inside for compile
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        return train_step(net, opt, [(x, y)], STEP_CONFIG, autocast=autocast, raw_model=model)[0]

    step = torch.compile(step_fn, **options) if compiled and settings.scope == "step" else step_fn
    if compiled and settings.compile in CUDA_GRAPH_MODES and settings.backend == "inductor":
        def graphed_step(x, y):  # tell CUDA-graph trees that a new iteration starts
            torch.compiler.cudagraph_mark_step_begin()
            return step(x, y)
        return graphed_step
    return step


@contextlib.contextmanager
def backend_flags(settings, device):
    """The TF32 / cudnn.benchmark flags for one measurement, restored afterwards (they are global)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    if settings.tf32:
        configure_backends(device)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def matmul_gflops(precision, device, size=2048, calls=10):
    """The machine's own ceiling: GFLOP/s of a size^3 matrix product in `precision`, best of 3 rounds."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    return max(2 * size ** 3 / (ms_per_call(lambda: a @ b, calls, device) / 1000) for _ in range(3)) / 1e9


def measure(config, impl, settings, batch, steps, warmup, device, flops, peak_flops, threads=None, matmul=None):
    """One row; out-of-memory and other failures are recorded in `status`, not raised. threads: the
    CPU's intra-op threads for this row (None: as they are); matmul: {precision: GFLOP/s} of this run."""
    _, img_size, num_classes, _, _ = CONFIGS[config]
    row = dict(config=config, impl=impl, compile=settings.compile, precision=settings.precision, batch=batch,
               threads=threads or torch.get_num_threads(), memory_format=settings.memory_format,
               settings=settings.describe())
    label = (f"{config} {impl} compile={settings.compile} {settings.precision} batch={batch} "
             f"threads={row['threads']} {settings.memory_format} {settings.describe()}")
    try:
        resolve_precision(device, settings.precision)
    except ValueError as error:  # bf16 on hardware that would emulate it: not worth the minutes
        row.update(images_per_s="", status=f"skipped: {str(error).split(';')[0]}")
        progress(f"{label}: {row['status']}")
        return row
    if settings.compile in CUDA_GRAPH_MODES:
        warmup = max(warmup, 3)  # CUDA-graph trees run eagerly once and record on a later call
    free_memory(device)
    reset_peak_memory(device)
    try:
        with backend_flags(settings, device):
            progress(f"{label}: building")
            model = build_model(impl, config).to(device, memory_format=memory_format(settings)).train()
            opt = make_adamw(model, settings, device)
            x = torch.randn(batch, 3, img_size, img_size, device=device).contiguous(
                memory_format=memory_format(settings))  # (B, C, H, W)
            y = torch.randint(num_classes, (batch,), device=device)  # (B,)
            step = make_train_step(model, opt, settings, device)
            progress(f"{label}: warm-up, {warmup} steps (compiles here)")
            warm_s = wall_seconds(lambda: step(x, y), warmup, device)
            progress(f"{label}: timing {steps} steps")
            step_ms = ms_per_call(lambda: step(x, y), steps, device)
            loss = float(step(x, y))
        images_per_s = 1000.0 * batch / step_ms
        gflops_per_s = 3 * flops * images_per_s / 1e9
        if matmul:
            row["matmul_fraction"] = gflops_per_s / matmul[(settings.precision, row["threads"])]
        row.update(images_per_s=images_per_s, step_ms=step_ms, peak_mem_gib=peak_memory_gib(device),
                   gflops_per_s=gflops_per_s,
                   compile_s=max(0.0, warm_s - warmup * step_ms / 1000.0),
                   mfu=3 * flops * images_per_s / peak_flops if device.type == "cuda" else "n/a",
                   status="ok" if math.isfinite(loss) else f"non-finite loss {loss}")
        progress(f"{label}: {images_per_s:.1f} images/s, {step_ms:.2f} ms/step, loss {loss:.3f}")
    except Exception as error:  # a failed variant must not cost the other measurements of a GPU session
        oom = is_out_of_memory(error)
        if not oom:
            traceback.print_exc()
        row.update(images_per_s="OOM" if oom else "", status="OOM" if oom else
                   f"error: {type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}")
        progress(f"{label}: {row['status']}")
    finally:
        if settings.compile != "none":  # drop the graphs, and keep the next variant clear of the
            torch._dynamo.reset()       # recompilation limit (past it dynamo silently runs eager)
    return row


def median_round(measurements):
    """The round with the median images/s, with `spread` = (max - min) / median over the rounds (a
    difference between two rows smaller than their spread is not resolved)."""
    ok = sorted((r for r in measurements if r.get("status") == "ok"), key=lambda r: r["images_per_s"])
    if not ok:
        return measurements[0]
    speeds = [r["images_per_s"] for r in ok]
    row = dict(ok[(len(ok) - 1) // 2])
    row["spread"] = (speeds[-1] - speeds[0]) / row["images_per_s"] if len(ok) > 1 else ""
    return row


def memory_format(settings):
    return torch.channels_last if settings.memory_format == "channels_last" else torch.contiguous_format


SAME_SETTINGS = ("compile", "precision", "batch", "threads", "memory_format")


def add_speed_vs_timm(rows):
    """images/s over timm's at the same config and settings (vitlib-best: the fastest timm row of
    its config)."""
    ok = lambda r: r.get("status") == "ok"
    for row in rows:
        timm = [r["images_per_s"] for r in rows if r["impl"] == "timm" and ok(r) and r["config"] == row["config"]
                and (row["impl"] == "vitlib-best" or all(r.get(k) == row.get(k) for k in SAME_SETTINGS))]
        row["speed_vs_timm"] = row["images_per_s"] / max(timm) if ok(row) and timm else ""


def paired_vs_timm(rounds):
    """Per variant (a column of `rounds`, one list of rows per round): the median over rounds of its
    images/s over timm's in the same round (add_speed_vs_timm's pairing), with the min and max. The
    rows of a round ran one after the other, so the ratio holds where the machine's speed drifts
    between rounds; {} for a variant no round pairs."""
    ratios = [[] for _ in rounds[0]]
    for measured in rounds:
        paired = [dict(row) for row in measured]
        add_speed_vs_timm(paired)
        for i, row in enumerate(paired):
            if row["speed_vs_timm"] != "":
                ratios[i].append(row["speed_vs_timm"])
    return [dict(vs_timm_paired=statistics.median(r), vs_timm_min=min(r), vs_timm_max=max(r)) if r else {}
            for r in ratios]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=None,
                   help=f"comma list of {', '.join(CONFIGS)} "
                        f"(default: {GPU_CONFIGS} on a GPU, {CPU_CONFIGS} on the CPU)")
    p.add_argument("--batch", default=None, help="images per step, a comma list (default: the config's)")
    p.add_argument("--precision", default="auto", help=f"comma list of {', '.join(PRECISIONS)} "
                                                       "(auto: vitlib.device's choice for the device)")
    p.add_argument("--threads", default=None, help="CPU intra-op threads, a comma list (default: torch's)")
    p.add_argument("--memory-format", default="contiguous", help=f"comma list of {', '.join(MEMORY_FORMATS)}")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed first steps (compilation happens here)")
    p.add_argument("--rounds", type=int, default=1, help="time every variant this many times in turn; report "
                                                          "the median round and the spread")
    p.add_argument("--compile", default="none", help=f"comma list of {', '.join(COMPILE_MODES)}")
    p.add_argument("--impls", default=None, help=f"comma list of {', '.join(IMPLS)} (default: vitlib, timm, "
                                                 "vitlib-best on a GPU; vitlib, each kernel and timm on the CPU; "
                                                 "the kernel rows are for ViTs only)")
    p.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                   help="on the CPU, glibc keeps freed memory for reuse as fit has it (vitlib.device."
                        "keep_freed_memory); --no-keep-freed-memory measures glibc's default")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide ViT on 16 px images (CPU tests)")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/throughput.csv)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU for MFU")
    p.add_argument("--backend", default="inductor", help=f"torch.compile backend: {', '.join(BACKENDS)}")
    p.add_argument("--pattern-matcher", action=argparse.BooleanOptionalAction, default=True,
                   help="inductor's pattern matcher (torch._inductor.config.pattern_matcher; among its rewrites: "
                        "explicit attention back into the fused kernel)")
    best = p.add_argument_group("vitlib-best", "the settings of the vitlib-best variant")
    best.add_argument("--best-compile", default="max-autotune-no-cudagraphs", help="torch.compile mode")
    best.add_argument("--best-scope", default="step", help=f"what torch.compile wraps: {', '.join(SCOPES)}")
    best.add_argument("--best-adamw", default="foreach", help=f"AdamW kernels: {', '.join(ADAMW_KINDS)}")
    best.add_argument("--best-tf32", action=argparse.BooleanOptionalAction, default=True,
                      help="TF32 and cudnn.benchmark via vitlib.device.configure_backends")
    args = p.parse_args(argv)
    args.device = resolve_device(args.device)
    on_cpu = args.device.type == "cpu"
    configs = args.configs or (CPU_CONFIGS if on_cpu else GPU_CONFIGS)
    args.configs = ["tiny"] if args.tiny else parse_list(configs, [c for c in CONFIGS if c != "tiny"], "--configs")
    args.compile = parse_list(args.compile, COMPILE_MODES, "--compile")
    default_impls = "vitlib,vitlib-sdpa,vitlib-explicit,timm" if on_cpu else "vitlib,timm,vitlib-best"
    args.impls = parse_list(args.impls or ("vitlib,timm,vitlib-best" if args.tiny else default_impls), IMPLS,
                            "--impls")
    args.precision = list(dict.fromkeys(resolve_precision(args.device) if p == "auto" else p
                                        for p in parse_list(args.precision, PRECISIONS, "--precision")))
    args.memory_format = parse_list(args.memory_format, MEMORY_FORMATS, "--memory-format")
    args.batch = parse_ints(args.batch, "--batch")
    args.threads = parse_ints(args.threads, "--threads")
    if args.threads and not on_cpu:
        raise ValueError("--threads sets the CPU's intra-op threads: use it with --device cpu")
    parse_list(args.backend, BACKENDS, "--backend")
    parse_list(args.best_compile, COMPILE_MODES, "--best-compile")
    parse_list(args.best_scope, SCOPES, "--best-scope")
    parse_list(args.best_adamw, ADAMW_KINDS, "--best-adamw")
    check_positive(steps=args.steps, warmup=args.warmup, peak_tflops=args.peak_tflops, rounds=args.rounds)
    if "timm" in args.impls:
        require_timm("--impls includes timm")
    return args


def parse_ints(text, name):
    """'32,64' -> [32, 64] (positive integers), None -> []."""
    if text is None:
        return []
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise ValueError(f"{name}={text!r} must be a comma list of positive integers")
    return values


def main(argv=None):
    args = parse_args(argv)
    device, out = args.device, resolve_out(args.out, "throughput")
    env = environment(device)
    if device.type == "cpu" and args.keep_freed_memory:
        keep_freed_memory()
    if not args.pattern_matcher:
        import torch._inductor.config as inductor_config
        inductor_config.pattern_matcher = False
    progress(f"throughput on {env['gpu']}, torch {env['torch']}, commit {env['commit']}; "
             f"precision {','.join(args.precision)}; CSV {out}")
    default_threads = torch.get_num_threads()
    thread_counts = args.threads or [None]
    matmul = {}
    if device.type == "cpu":  # this run's own ceiling per (precision, threads)
        for threads in thread_counts:
            torch.set_num_threads(threads or default_threads)
            for precision in args.precision:
                if precision == "fp32" or cpu_has_native_bf16():
                    key = (precision, torch.get_num_threads())
                    matmul[key] = matmul_gflops(precision, device)
                    progress(f"2048^3 matrix product, {precision}, {key[1]} threads: {matmul[key]:.1f} GFLOP/s")
        torch.set_num_threads(default_threads)
    rows = []
    try:
        for config in args.configs:
            flops = count_flops(build_model("vitlib", config).to(device), CONFIGS[config][1])
            for precision, batch, threads, layout in itertools.product(
                    args.precision, args.batch or [CONFIGS[config][3]], thread_counts, args.memory_format):
                torch.set_num_threads(threads or default_threads)
                plain = lambda mode: Settings(compile=mode, backend=args.backend, precision=precision,  # noqa: E731
                                              memory_format=layout)
                best = Settings(args.best_compile, args.best_scope, args.best_adamw, args.best_tf32, args.backend,
                                precision, layout)
                is_vit = CONFIGS[config][0].startswith("vit")
                variants = [(impl, plain(mode)) for mode in args.compile for impl in IMPLS[:4]
                            if impl in args.impls and (is_vit or impl not in KERNEL_IMPLS)]
                variants += [("vitlib-best", best)] if "vitlib-best" in args.impls else []
                rounds = []  # the variants in turn, `--rounds` times: drifting clocks hit all alike
                for _ in range(args.rounds):
                    rounds.append([measure(config, impl, settings, batch, args.steps, args.warmup, device, flops,
                                           args.peak_tflops * 1e12, threads, matmul) for impl, settings in variants])
                group = [median_round([r[i] for r in rounds]) for i in range(len(variants))]
                for row, paired in zip(group, paired_vs_timm(rounds)):
                    row.update(paired)
                if device.type == "cpu":  # the allocator setting is the process's: say it in every row
                    for row in group:
                        row["settings"] += f" malloc={'keep' if args.keep_freed_memory else 'default'}"
                for row in group:
                    row["settings"] += ("" if args.pattern_matcher or row["compile"] == "none"
                                        else " pattern_matcher=off")
                rows += group
                add_speed_vs_timm(rows)
                write_csv(rows, out, COLUMNS, env)  # after every group: a run killed later keeps these
    finally:
        torch.set_num_threads(default_threads)
    free_memory(device)
    print_table(rows, COLUMNS, title=f"\nTraining throughput on {env['gpu']} (torch {env['torch']}, "
                                     f"commit {env['commit']}), written to {out}")
    return rows


if __name__ == "__main__":
    run_cli(main)
