"""The one place that chooses the device and the numeric precision.

Every part of vitlib that runs a model asks here: `default_device()` for where, and
`autocast_context(device, precision)` for how. "auto" precision means bf16 autocast (weights,
optimiser state, the loss and reductions stay fp32) where the hardware computes bf16 natively — a
CUDA GPU of compute capability >= 8.0, or a CPU with AVX512-BF16 or AMX (AMD Zen 4, Intel Cooper
Lake / Sapphire Rapids and later) — and plain fp32 elsewhere. Without native support bf16 is
emulated and slower than fp32 (measured ~6x slower on an AVX2-only AMD EPYC), so it is refused.
A run states its precision in its configuration (TrainConfig.precision, a study's `precision`);
the library never reads the environment for it. Only the command lines (`vitlib train`, the study
runner) take $VITLIB_PRECISION (auto | bf16 | fp32), as an override they print and record in the run.
"""
import contextlib
import functools
import os
import platform

import torch

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "VITLIB_PRECISION"


def default_device():
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device="auto"):
    """"auto" | "cpu" | "cuda" | "cuda:N" | torch.device -> torch.device (checked to exist)."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but there are {torch.cuda.device_count()} CUDA devices; "
                         f"allowed: 'cuda' or 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}'")
    return dev


def precision_from_env():
    """$VITLIB_PRECISION, checked, or None when unset: the command lines' override of the precision
    a run states, e.g. fp32 to re-make on hardware with native bf16 results made in fp32 elsewhere."""
    value = os.environ.get(PRECISION_ENV) or None
    if value is not None and value not in PRECISIONS:
        raise ValueError(f"${PRECISION_ENV}={value!r} is not supported; allowed: {', '.join(PRECISIONS)}")
    return value


def resolve_precision(device, precision="auto"):
    """The precision a run on `device` actually uses: "bf16" or "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not supported; allowed: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "fp32":
        return "fp32"
    if device.type != "cuda":
        if cpu_has_native_bf16():
            return "bf16"
        if precision == "bf16":
            raise ValueError(f"precision='bf16' but this CPU ({cpu_capability()}) has no native bf16 "
                             "(AVX512-BF16 or AMX), where bf16 is emulated and slower than fp32; "
                             "use precision='fp32' or 'auto'")
        return "fp32"
    # native bf16 only (compute capability >= 8.0): torch's default also counts the slow emulation
    # of older GPUs (V100, T4) as support
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        if precision == "bf16":
            raise ValueError(f"precision='bf16' but {torch.cuda.get_device_name(device)} has no native bf16 "
                             "support (compute capability < 8.0); use precision='fp32' or 'auto'")
        return "fp32"
    return "bf16"


@functools.cache
def _cpuinfo():
    """The fields of /proc/cpuinfo (Linux) as {name: its first value}, or None where that file is
    not readable; read once per process (the precision, memory-format and attention-kernel rules
    and each run's description all ask for it)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        return None
    return fields


def _cpu_flags():
    """The CPU's feature flags ("flags" on x86, "Features" on Arm), or None where /proc/cpuinfo is
    not readable or names none."""
    fields = _cpuinfo() or {}
    flags = fields.get("flags", fields.get("Features"))
    return None if flags is None else frozenset(flags.split())


@functools.cache
def cpu_has_native_bf16():
    """True where the CPU multiplies bf16 in hardware. oneDNN's own check
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) also accepts AVX-512 CPUs that only emulate bf16
    (Skylake, Cascade Lake), so on Linux the flags must name avx512_bf16 or amx_bf16 as well; an Arm
    CPU's bf16 extension counts ("bf16" in its Features)."""
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    flags = _cpu_flags()
    if flags is None:
        return onednn
    return onednn and bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_kind():
    """The CPU's class as the benchmarks' tables are keyed: "amx-bf16" (Intel Sapphire Rapids and
    later), "avx512-bf16" (AMD Zen 4 and later, Intel Cooper Lake), "avx512", "avx2", or the
    instruction set torch reports. Decisions measured on one kind are stated for that kind."""
    flags = _cpu_flags() or set()
    for flag, kind in (("amx_bf16", "amx-bf16"), ("avx512_bf16", "avx512-bf16"), ("avx512f", "avx512"),
                       ("avx2", "avx2")):
        if flag in flags:
            return kind
    return cpu_capability().lower()


def cpu_capability():
    """The instruction set torch's CPU kernels use here ("AVX2", "AVX512", ...), for messages."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return platform.processor() or platform.machine()


def cpu_description():
    """The CPU as results name it: model, cores, torch's instruction set and threads, native bf16."""
    model = (_cpuinfo() or {}).get("model name") or platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return (f"{model}, {os.cpu_count()} cores, {cpu_capability()}, {threads} thread{'' if threads == 1 else 's'}, "
            f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'} ({cpu_kind()})")


def autocast_context(device, precision="auto"):
    """bf16 autocast (matrix products and convolutions in bf16; reductions, norms, softmax and the
    loss in fp32 by autocast's op lists), or a no-op context in fp32."""
    device = torch.device(device)
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


def resolve_memory_format(device, precision, model, memory_format="auto"):
    """The layout of a run's image batches and conv weights: torch.channels_last or
    torch.contiguous_format. "auto" is channels_last for a convolutional network (more than the one
    patch-embedding conv of a ViT) on the CPU in fp32, and in bf16 on a CPU with AMX, where oneDNN's
    NHWC convolutions trained the CIFAR ResNets 1.1-1.5x faster (bench/README.md); contiguous
    everywhere else: a ViT's only conv is the patch embedding (no difference measured), and on an
    AVX512-BF16 CPU without AMX NHWC in bf16 gained nothing beyond the spread (1.01-1.08x for the
    narrow ResNet)."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format={memory_format!r} is not supported; allowed: {', '.join(MEMORY_FORMATS)}")
    if memory_format == "auto":
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        on_cpu = torch.device(device).type == "cpu"
        nhwc_fast = resolve_precision(device, precision) == "fp32" or cpu_kind() == "amx-bf16"
        memory_format = "channels_last" if on_cpu and nhwc_fast and convs > 1 else "contiguous"
    return torch.channels_last if memory_format == "channels_last" else torch.contiguous_format


def configure_backends(device):
    """Let fp32 matrix products use TF32 tensor cores on Ampere and later GPUs (what fp32 parts of a
    bf16-autocast step run in; about 10 mantissa bits, ample for training), and let cuDNN pick the
    fastest convolution algorithm for the fixed input shapes of a training run. On the CPU: keep
    freed memory in the process (keep_freed_memory)."""
    if torch.device(device).type == "cpu":
        keep_freed_memory()
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


# glibc's mallopt parameters: blocks below the mmap threshold come from the heap, and the heap keeps
# up to the trim threshold of freed memory instead of returning it to the kernel
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 2 ** 20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 2 ** 30


@functools.cache
def keep_freed_memory():
    """Make glibc's malloc reuse freed activation memory instead of unmapping it. By default
    blocks over 128 KiB-32 MiB are mmap'ed and returned on free, so every training step page-faults
    its activations in anew (60,000 minor faults per step of the D 192 ViT, batch 128): the kernel
    zeroes each page, which cost 10-16% of the CPU training step (bench/README.md). True where set;
    False off glibc (macOS, musl), which is left as it is."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def synchronize(device):
    """Wait for queued GPU work, so that wall-clock timings measure the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device):
    """The hardware a run used, as results and reports name it: the GPU's name, or the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_description()})"
