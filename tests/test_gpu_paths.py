"""The GPU code paths, checked as far as a CPU can: bf16 autocast (on the CPU), torch.compile (the
"eager" backend), host syncs in the training step (on the meta device, where any read-back
fails and every host-to-device copy is visible), DDP's every-parameter-gets-a-gradient rule, and
the output-buffer reuse of CUDA graphs. Tests with "cuda" in their name run only with a GPU
(`pytest -k cuda`; bench/gpu_smoke.sh runs them) and check the real thing there.
"""
import contextlib
import copy
import dataclasses
import subprocess
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import vitlib.device as device_module
from vitlib import create_model
from vitlib.data import AugmentConfig, BatchStream, get_dataset
from vitlib.data.augment import normalize
from vitlib.data.datasets import ImageDataset
from vitlib.device import resolve_device, resolve_precision
from vitlib.train import TrainConfig, distributed, fit, runfolder
from vitlib.train.step import evaluate, make_optimizer, train_step

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
POS_EMBS = ("learned", "learned2d", "sincos2d", "relative", "none")
AUGMENT = AugmentConfig(crop="pad_crop", flip=True, randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0)
STEP = TrainConfig(label_smoothing=0.1, clip_grad=1.0, ema_decay=0.9)  # every part of the step on


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_vit(**kw):
    return create_model("vit_ti4", num_classes=10, img_size=32, **{**dict(depth=1, embed_dim=32, num_heads=2,
                                                                         mlp_dim=64), **kw})


# ---- bf16 autocast -----------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["token", "gap"])
@pytest.mark.parametrize("pos_emb", POS_EMBS)
def test_residual_stream_stays_fp32_under_bf16_autocast(pool, pos_emb):
    """Under autocast the patch conv returns bf16; the tokens between blocks must still be fp32
    (the class token's concatenation promoted them, GAP models used to stay bf16 throughout)."""
    model = tiny_vit(depth=2, pool=pool, pos_emb=pos_emb)
    dtypes = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: dtypes.append((args[0].dtype, out[0].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 32, 32))
        loss = F.cross_entropy(logits, torch.tensor([1, 2]), label_smoothing=0.1)
    loss.backward()
    assert dtypes == [(torch.float32, torch.float32)] * 2
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32  # the head's matmul, an fp32 loss
    assert {p.grad.dtype for p in model.parameters()} == {torch.float32}


# ---- DDP -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw", [("vit_ti4", dict(pos_emb=p, pool=q)) for p in POS_EMBS for q in ("token", "gap")]
                         + [("r_vit_ti4", {}), ("resnet18_cifar", dict(blocks=(1, 1, 1, 1), widths=(8, 8, 8, 8)))],
                         ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_every_parameter_gets_a_gradient(name, kw):
    """DDP (find_unused_parameters=False) stops at the second step when a parameter takes no part in
    the loss: learned2d + GAP used to keep an empty class-token position embedding."""
    if name == "vit_ti4":
        kw = dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64, **kw)
    model = create_model(name, num_classes=10, img_size=32, **kw)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


# ---- host syncs in the training step --------------------------------------------------------------
class HostSyncs(TorchFunctionMode):
    """Records what would stall a GPU inside the region: a tensor made from host data directly on
    the device or a blocking host-to-device copy (both wait for all queued GPU work), and a
    read-back (.item(), .tolist(), nonzero, bool(), .cpu())."""

    READ_BACKS = (torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.nonzero, torch.nonzero,
                  torch.Tensor.__bool__, torch.Tensor.cpu)

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = None
        if func in (torch.tensor, torch.as_tensor) and _device(kwargs.get("device")) not in (None, "cpu"):
            if not (isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu"):
                what = f"torch.{func.__name__}(host data, device=...)"
        elif func is torch.Tensor.to and args[0].device.type == "cpu":
            target = next((d for d in map(_device, (kwargs.get("device"), *args[1:])) if d), None)
            if target not in (None, "cpu") and not kwargs.get("non_blocking", False):
                what = "blocking host-to-device copy"
        elif func in self.READ_BACKS and args[0].device.type != "cpu":
            what = func.__name__
        if what:
            self.found.append(f"{what} at {traceback.format_stack(limit=3)[0].strip()}")
        return func(*args, **kwargs)


def _device(arg):
    if isinstance(arg, torch.Tensor):
        return arg.device.type
    if isinstance(arg, (str, torch.device)):
        with contextlib.suppress(RuntimeError):
            return torch.device(arg).type
    return None


def test_training_step_makes_no_host_sync():
    """One step as fit runs it (stream with every augmentation, forward, loss, backward, clip,
    optimiser, EMA) on the meta device: RandAugment used to build its grey weights with a blocking
    copy per op per batch."""
    device = torch.device("meta")
    with HostSyncs() as watch:  # the detector sees what it should
        torch.tensor([1.0], device=device), torch.ones(2).to(device), torch.ones(2).to(device, non_blocking=True)
    assert [f.split(" at ")[0] for f in watch.found] == ["torch.tensor(host data, device=...)",
                                                        "blocking host-to-device copy"]

    stream = BatchStream(get_dataset("fake", "train"), 32, device=device, augment=AUGMENT)
    model = tiny_vit(drop_path=0.1, pos_emb="relative").to(device)
    optimizer = make_optimizer(model, TrainConfig(), device)
    ema = copy.deepcopy(model)
    batches = iter(stream)
    with HostSyncs() as watch:
        for _ in range(2):
            x, y = next(batches)
            train_step(model, optimizer, [(x, y)], STEP, lr=1e-3, ema_model=ema)
        normalize(x, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))  # extract_features passes tuples
    assert watch.found == []


@needs_cuda
def test_cuda_training_step_makes_no_host_sync():
    """The same step on the GPU with bf16 autocast and the fused optimiser, under CUDA's own sync
    detector (a warm-up step first: lazy initialisation may synchronise once)."""
    device = torch.device("cuda")
    stream = BatchStream(get_dataset("fake", "train"), 32, device=device, augment=AUGMENT)
    model = tiny_vit(drop_path=0.1, pos_emb="relative").to(device)
    optimizer = make_optimizer(model, TrainConfig(), device)
    ema = copy.deepcopy(model)
    batches = iter(stream)

    def step():
        train_step(model, optimizer, [next(batches)], STEP, lr=1e-3, ema_model=ema,
                   autocast=torch.autocast("cuda", dtype=torch.bfloat16))

    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert optimizer.defaults["fused"] is True


# ---- evaluation under CUDA graphs ------------------------------------------------------------------
class LeftMinusRight(nn.Module):
    """Class 0 when the left half is brighter, else class 1. With reuse=True it writes every output
    into one buffer, as a compiled model under CUDA graphs (mode "reduce-overhead") does."""

    def __init__(self, reuse):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.reuse, self.out = reuse, None

    def forward(self, x):  # (B, C, H, W) -> (B, 2)
        w = x.shape[-1] // 2
        d = (x[..., :w].mean((1, 2, 3)) - x[..., w:].mean((1, 2, 3))) * self.scale
        logits = torch.stack([d, -d], dim=1)
        if not self.reuse:
            return logits
        if self.out is None:
            self.out = torch.empty_like(logits)
        return self.out.copy_(logits)


def left_bright_dataset(n=16):
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    images[..., :4] = 200
    return ImageDataset(images, torch.zeros(n, dtype=torch.int64), ["left", "right"], (0.5,) * 3, (0.25,) * 3,
                        "left_bright", "test")


def test_flip_tta_survives_output_buffer_reuse():
    """Flipped images read as class 1, the originals as class 0 (all labels): plain and flip-TTA
    accuracy are both 1. Reading the first output after the flipped call used to see the flipped
    logits there (0 and 0)."""
    stream = BatchStream(left_bright_dataset(), 8, device="cpu", shuffle=False, drop_last=False)
    info = distributed.DistInfo(0, 1, torch.device("cpu"))
    for reuse in (False, True):
        assert evaluate(LeftMinusRight(reuse), stream, contextlib.nullcontext(), True, info) == (1.0, 1.0)


@needs_cuda
def test_cuda_graphs_flip_tta_matches_eager():
    torch._dynamo.reset()
    stream = BatchStream(get_dataset("fake", "test"), 64, device="cuda", shuffle=False, drop_last=False)
    info = distributed.DistInfo(0, 1, torch.device("cuda"))
    model = tiny_vit().cuda()
    torch.nn.init.normal_(model.head.weight, std=0.5)  # not a zero head: predictions must differ by image
    eager = evaluate(model, stream, contextlib.nullcontext(), True, info)
    graphed = evaluate(torch.compile(model, mode="reduce-overhead"), stream, contextlib.nullcontext(), True, info)
    assert graphed == pytest.approx(eager, abs=2 / 256)  # at most a near-tie or two may flip


# ---- device and precision choice ------------------------------------------------------------------
def test_auto_precision_needs_native_bf16(monkeypatch):
    """torch.cuda.is_bf16_supported() counts emulation (V100, T4) as support: auto must not."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert resolve_precision("cuda", "auto") == "fp32"
    with pytest.raises(ValueError, match="Tesla T4 has no native bf16 support"):
        resolve_precision("cuda", "bf16")


def test_device_ordinals_and_local_rank_are_checked_before_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device='cuda:1' but there are 1 CUDA devices"):
        resolve_device("cuda:1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="LOCAL_RANK=1 but this machine has 1 CUDA devices"):
        distributed.setup("cuda")


# ---- torch.compile, checkpoint and resume ----------------------------------------------------------
class Interrupted(Exception):
    pass


@pytest.mark.parametrize("device", ["cpu", "cpu-bf16", pytest.param("cuda", marks=needs_cuda)])
def test_compiled_fit_interrupted_and_resumed_matches_uninterrupted(device, tmp_path, monkeypatch):
    """A compiled run's checkpoint holds the plain module's keys (no "_orig_mod."), and a run
    stopped after its first checkpoint resumes to the uninterrupted result. On the CPU the
    compiler is the "eager" backend (fast, the same graph capture), in fp32 and in bf16 autocast
    (run here as on a CPU with native bf16; without it bf16 is emulated: slower, the same numbers),
    both exact; on a GPU it is inductor with bf16 autocast, where a kernel's summation order may
    differ between compilations."""
    precision = "bf16" if device == "cpu-bf16" else "auto"
    if device == "cpu-bf16":
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
        device = "cpu"
    if device == "cpu":
        compile_ = torch.compile
        monkeypatch.setattr(torch, "compile", lambda model, mode=None: compile_(model, backend="eager"))
    train, test = get_dataset("fake", "train"), get_dataset("fake", "test")
    config = TrainConfig(epochs=2, batch_size=64, lr=1e-3, compile=True, ema_decay=0.9, tta_flip=True,
                         clip_grad=1.0, device=device, precision=precision,
                         augment=dataclasses.asdict(AUGMENT) | {"randaugment_ops": 1})

    def run(out, **kw):
        torch._dynamo.reset()  # each run compiles afresh, as a new process would (and stays under the recompile limit)
        torch.manual_seed(0)
        model = tiny_vit(dropout=0.1)
        return model, fit(model, train, test, config, tmp_path / out, progress=False, **kw)

    model, reference = run("reference")
    save = runfolder.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise Interrupted

    monkeypatch.setattr(runfolder, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        run("resumed")
    monkeypatch.setattr(runfolder, "save_checkpoint", save)
    resumed_model, resumed = run("resumed", resume=True)

    ckpt = runfolder.load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and set(ckpt["model"]) == set(model.state_dict())
    assert reference["precision"] == resolve_precision(device, precision)
    assert reference["compile_seconds"] is not None and resumed["steps"] == reference["steps"] == 8
    exact = dict(rtol=0, atol=0) if device == "cpu" else dict(rtol=1e-3, atol=1e-4)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, **exact)
    for key in ("train_loss", "eval_acc", "eval_acc_ema", "eval_acc_tta"):
        assert resumed["final"][key] == pytest.approx(reference["final"][key], abs=0 if device == "cpu" else 2e-2)


def test_gpu_smoke_script_parses():
    subprocess.run(["bash", "-n", str(Path(__file__).resolve().parents[1] / "bench" / "gpu_smoke.sh")], check=True)
