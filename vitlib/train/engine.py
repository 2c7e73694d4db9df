"""`fit`: the one training loop of vitlib, read top to bottom in the order things happen.

    prepare:  device, run folder checks, batch streams, model (+ compile, DDP), optimiser, EMA, resume
    train_epoch, once per epoch:  seed dropout from (seed, epoch), replay the epoch's batches
        per step:  lr from the schedule, then train_step (step.py): forward/backward over grad_accum
                   micro-batches, clip, optimiser step, EMA update; with eval_every_steps, every N
                   steps an evaluation (evaluate_now: record_evaluation and the patience check)
        end of epoch:  NaN check, the epoch's evaluation (validation, raw, flip-TTA, EMA; metrics.csv;
                       the selection on validation, best.pt), a log line, save_checkpoint (checkpoint.pt)
    finish:  summary.json (with the selected evaluation and where patience stopped the run)

The run's progress (steps, epochs, metrics rows, clocks, sums since the last evaluation, the
selection on validation) lives in one RunState, saved and restored as one.

Exact resume: checkpoints are taken at epoch boundaries, every random choice inside an epoch is a
function of (seed, epoch, batch index, rank), so a resumed run replays the lost epochs
bit-for-bit on the same hardware.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vitlib.data import BatchStream
from vitlib.device import autocast_context, configure_backends, resolve_memory_format, resolve_precision, synchronize
from vitlib.flops import count_flops, count_params
from vitlib.provenance import environment_info
from vitlib.train import distributed, runfolder
from vitlib.train.config import TrainConfig
from vitlib.train.schedule import lr_at
from vitlib.train.step import evaluate, make_optimizer, train_step


def show_progress() -> bool:
    """A live progress bar where someone watches one (a terminal, a Jupyter front end); in logs and
    batch runs only the per-epoch lines, no carriage-return spam. VITLIB_PROGRESS=0/1 decides
    outright (the study runner sets 0 for its kernels)."""
    setting = os.environ.get("VITLIB_PROGRESS")
    if setting is not None:
        return setting.strip() not in ("", "0")
    if sys.stdout.isatty():
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


def progress_bar(**kwargs):
    """tqdm's widget bar in a Jupyter front end with ipywidgets, its text bar elsewhere (imported
    only where it is used: tqdm.auto warns in every kernel without ipywidgets)."""
    if not kwargs.get("disable") and not sys.stdout.isatty():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm
            return notebook_tqdm(**kwargs)
        except ImportError:
            pass
    return tqdm(**kwargs)


def fit(model, train_data, eval_data, config, out_dir, *, val_data=None, resume=False, progress=None,
        run_info=None):
    """Train `model` on `train_data`, evaluate on `eval_data` (ImageDataset or FolderDataset), write
    the run folder `out_dir` and return the summary dict (summary.json's content).

    val_data: a validation set held out from the training images. Given one, every evaluation also
    measures it, and it alone chooses: the evaluation with the best validation accuracy is the run's
    selected one (summary["selected"]: its step, validation and eval_data accuracy; its weights in
    best.pt), and config.patience stops the run once validation has not improved for that many
    evaluations (summary["stopped_early"]). eval_data never chooses anything then.

    config: a TrainConfig (or its dict). progress: show a progress bar (None: show_progress()).
    run_info: extra JSON-able facts merged into config.json
    (the CLI records the data-set arguments there). The model is moved to the device and trained
    in place. A folder that already holds a run is never overwritten: resume=True continues it from
    checkpoint.pt (or returns its summary if it is complete), and a folder of a different run is
    refused; see runfolder.check_run_folder for the rules. A NaN/inf loss raises FloatingPointError
    and leaves the last good checkpoint. Under torchrun every rank calls fit; only rank 0 writes.
    """
    parts, state = prepare(model, train_data, eval_data, config, out_dir, val_data, resume, run_info)
    bar = progress_bar(total=parts.total_steps, initial=state.step, unit="step", dynamic_ncols=True,
                       disable=not ((show_progress() if progress is None else progress) and parts.dist.is_main))
    try:
        for epoch in range(state.epoch, parts.num_epochs):
            train_epoch(parts, state, epoch, bar)
            if state.stopped_early is not None:
                break
    except KeyboardInterrupt:  # Ctrl-C: say so in the run folder; the last checkpoint stays as it was
        mark_interrupted(parts, state)
        raise
    finally:
        bar.close()
    return finish(parts, state)


def prepare(model, train_data, eval_data, config, out_dir, val_data, resume, run_info):
    """Everything before the first step, in order: device and precision, batch sizes and run
    length, the run folder (checked on every rank before any writes), the model (+ compile, DDP),
    optimiser and EMA, and the resumed state. Returns (Parts, RunState)."""
    config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    dist = distributed.setup(config.device)
    device, out_dir = dist.device, Path(out_dir)
    precision = resolve_precision(device, config.precision)
    configure_backends(device)
    autocast = autocast_context(device, precision)

    # ---- batch sizes and run length -----------------------------------------------------------
    per_rank = config.batch_size // dist.world_size
    if config.batch_size % (dist.world_size * config.grad_accum):
        raise ValueError(f"batch_size={config.batch_size} must divide evenly over world_size="
                         f"{dist.world_size} processes x grad_accum={config.grad_accum}")
    micro_batch = per_rank // config.grad_accum
    if len(train_data) < config.batch_size:
        raise ValueError(f"the training set has {len(train_data)} images, fewer than one global batch "
                         f"(batch_size={config.batch_size}); lower batch_size")
    memory_format = resolve_memory_format(device, precision, model, config.memory_format)
    shard = dict(seed=config.seed, rank=dist.rank, world_size=dist.world_size, num_workers=config.num_workers,
                 memory_format=memory_format)
    train_stream = BatchStream(train_data, micro_batch, device=device, augment=config.augment_config(),
                               shuffle=True, drop_last=True, **shard)
    # no activations are kept for backward in eval, so twice the training micro-batch fits
    eval_stream = BatchStream(eval_data, 2 * micro_batch, device=device, shuffle=False, drop_last=False, **shard)
    steps_per_epoch = len(train_stream) // config.grad_accum
    total_steps = config.steps or config.epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = config.warmup(steps_per_epoch)
    eval_every_steps, checkpoint_every_steps = config.cadence(total_steps)
    if warmup >= total_steps:
        raise ValueError(f"warm-up ({warmup} steps) must be shorter than the run ({total_steps} steps)")
    if config.patience and val_data is None:
        raise ValueError(f"patience={config.patience} stops on validation accuracy: pass val_data (a split held out "
                         "from the training images), or patience=0")
    val_stream = (BatchStream(val_data, 2 * micro_batch, device=device, shuffle=False, drop_last=False, **shard)
                  if val_data is not None else None)

    # ---- run folder: check on every rank before any rank writes --------------------------------
    record = {"train": config.to_dict(), "precision": precision, "model": runfolder.describe_model(model),
              "data": {"train": runfolder.describe_data(train_data), "eval": runfolder.describe_data(eval_data),
                       **({"val": runfolder.describe_data(val_data)} if val_data is not None else {})},
              **(run_info or {})}
    try:  # the checkpoint to resume from is loaded here: a damaged one stops the run before any write
        error, ckpt = None, runfolder.check_run_folder(out_dir, record, resume)
    except ValueError as e:
        error, ckpt = str(e), None
    if (error := distributed.broadcast_error(error, dist)) is not None:
        raise ValueError(error)
    distributed.barrier(dist)
    log = tqdm.write if dist.is_main else lambda message: None  # printed above the progress bar
    if dist.is_main:
        runfolder.start(out_dir, record, ckpt, resume, log, env=dict(environment_info(),
            device=str(device), precision=precision, world_size=dist.world_size,
            memory_format="channels_last" if memory_format == torch.channels_last else "contiguous",
            attention_kernel=(model.attention_kernels(device.type, precision == "bf16")
                              if hasattr(model, "attention_kernels") else None),
            # the data's files are machine-specific: here, not in config.json
            data_source={"train": train_data.source, "eval": eval_data.source,
                         **({"val": val_data.source} if val_data is not None else {})}))

    # ---- model, optimiser, EMA -----------------------------------------------------------------
    raw_model = model.to(device, memory_format=memory_format).train()
    if config.zero_init_head:
        zero_head(raw_model)
    in_chans, _, img_size = runfolder.image_shape(train_data)
    flops_per_image = count_flops(raw_model, img_size, in_chans)
    optimizer = make_optimizer(raw_model, config, device)
    ema_model = copy.deepcopy(raw_model).float().requires_grad_(False) if config.ema_decay else None
    fwd_model = torch.compile(raw_model, mode=config.compile_mode) if config.compile else raw_model
    train_model = fwd_model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            fwd_model, device_ids=[device.index] if device.type == "cuda" else None)

    parts = Parts(config=config, dist=dist, device=device, out_dir=out_dir, log=log, precision=precision,
                  raw_model=raw_model, fwd_model=fwd_model, train_model=train_model, ema_model=ema_model,
                  optimizer=optimizer, autocast=autocast, train_stream=train_stream, eval_stream=eval_stream,
                  val_stream=val_stream, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                  num_epochs=num_epochs, warmup=warmup, eval_every_steps=eval_every_steps,
                  checkpoint_every_steps=checkpoint_every_steps, flops_per_image=flops_per_image)

    # ---- resume -----------------------------------------------------------------------------------
    state = RunState()
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema_model is not None:
            ema_model.load_state_dict(ckpt["ema"])
        runfolder.set_rng_state(ckpt["rng"])
        state = RunState.from_checkpoint(ckpt)
        log(f"resumed from {out_dir / 'checkpoint.pt'} at epoch {state.epoch}, step {state.step}")
    # the loss and correct-prediction sums since the last evaluation stay on the device (no host sync
    # per step); each rank adds its share, and the checkpoint's sums over ranks come back on rank 0
    state.to_device(device, keep=dist.is_main)
    state.start_session(checkpoint_every_steps)
    return parts, state


def train_epoch(parts: Parts, state: RunState, epoch: int, bar) -> None:
    """One epoch, or its part up to the run's end or an early stop: the steps, with the
    evaluations due among them (eval_every_steps), then the epoch's end: its evaluation or log
    line, and a checkpoint when one is due."""
    config, log = parts.config, parts.log
    # dropout / drop-path draw from the global torch generator: seed it per (seed, epoch, rank)
    torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, parts.dist.rank]).generate_state(1)[0]))
    parts.train_stream.set_epoch(epoch)
    batches = iter(parts.train_stream)
    steps = min(parts.steps_per_epoch, parts.total_steps - state.step)
    clock = EpochClock(steps, parts.device, config.batch_size)
    for i in range(steps):
        lr = lr_at(state.step, peak_lr=config.lr, total_steps=parts.total_steps, warmup_steps=parts.warmup,
                   schedule=config.schedule, min_lr=config.min_lr)
        micro_batches = [next(batches) for _ in range(config.grad_accum)]
        clock.losses[i], correct = train_step(parts.train_model, parts.optimizer, micro_batches, config, lr=lr,
                                              autocast=parts.autocast, raw_model=parts.raw_model,
                                              ema_model=parts.ema_model)
        state.correct += correct
        state.step += 1
        if config.compile and state.step == state.session_start_step + 1:  # the first step compiles
            state.clock["compile_s"] += clock.restart()
        bar.update(1)
        if (i + 1) % config.log_every == 0 or i + 1 == steps:  # a sync: not every step
            bar.set_postfix(loss=f"{clock.check(i + 1, parts, state):.4f}", lr=f"{lr:.2e}")
        if parts.eval_every_steps and state.step % parts.eval_every_steps == 0 and state.step < parts.total_steps:
            clock.check(i + 1, parts, state)
            clock.close_segment(state, i + 1)
            evaluate_now(parts, state, state.step / parts.steps_per_epoch, lr)
            clock.restart()
            if state.stopped_early is not None:
                break

    done = state.step - epoch * parts.steps_per_epoch  # fewer than steps_per_epoch when stopped early
    clock.close_segment(state, done)
    state.epoch = epoch + 1
    last = state.stopped_early is not None or epoch == parts.num_epochs - 1
    by_steps = parts.eval_every_steps > 0
    line = (f"epoch {epoch + 1}/{parts.num_epochs}, step {state.step}/{parts.total_steps}: loss "
            f"{clock.mean_loss:.4f}, lr {lr:.2e}, {done * config.batch_size / max(clock.seconds, 1e-9):.0f} images/s")
    if state.stopped_early is None and (last or not by_steps and (epoch + 1) % config.eval_every == 0):
        whole = done == parts.steps_per_epoch or last
        evaluate_now(parts, state, epoch + 1 if whole else state.step / parts.steps_per_epoch, lr,
                     line=None if by_steps else line)
    elif not by_steps:
        log(line)
    if state.stopped_early is not None:
        log(f"stopped early at step {state.step}: validation accuracy has not improved for "
            f"{config.patience} evaluations; selected: step {state.selected['step']}")
    checkpoint_due = (state.step >= state.next_checkpoint if parts.checkpoint_every_steps
                      else (epoch + 1) % config.checkpoint_every == 0)
    if checkpoint_due or last or state.stopped_early is not None:
        save_checkpoint(parts, state)
        state.checkpointed(parts.checkpoint_every_steps)


def evaluate_now(parts: Parts, state: RunState, epochs_done, lr, line=None) -> None:
    """An evaluation (record_evaluation), the patience rule, and its log line: `line | evaluation`
    in a run evaluated by epochs, the step line in one evaluated by steps."""
    evaluation = record_evaluation(parts, state, epochs_done, lr)
    state.stop_early(parts.config.patience)
    parts.log(f"{line} | {evaluation}" if line else step_line(state, parts.total_steps, lr, evaluation))


def mark_interrupted(parts: Parts, state: RunState) -> None:
    """summary.json says the run was interrupted, and where its last saved state is."""
    if parts.dist.is_main:
        checkpoint, epoch = parts.out_dir / runfolder.CHECKPOINT, state.last_checkpoint_epoch
        runfolder.write_summary(parts.out_dir, {
            "status": "interrupted", "step": state.step,
            "error": f"interrupted at step {state.step}; {checkpoint} (epoch {epoch}) is the last saved state: "
                     "continue with resume=True (--resume)" if epoch
                     else f"interrupted at step {state.step}, before the first checkpoint"})


def finish(parts: Parts, state: RunState) -> dict:
    """summary.json (rank 0) from the finished run's state; returns it."""
    summary = runfolder.make_summary(state.metrics, state.clock, parts.config, state.step, parts.flops_per_image,
                                     count_params(parts.raw_model), parts.dist.world_size, parts.precision,
                                     selected=state.selected, stopped_early=state.stopped_early,
                                     total_steps=parts.total_steps)
    if parts.dist.is_main:
        runfolder.write_summary(parts.out_dir, summary)
    distributed.barrier(parts.dist)
    return summary


class EpochClock:
    """One epoch's step losses (on the device: no host sync per step) and its training time, put
    on the run's clocks and sums (RunState.add_segment) in segments: up to each evaluation, then
    the rest of the epoch. mean_loss: the epoch's mean step loss at the last check."""

    def __init__(self, steps, device, batch_size):
        self.losses = torch.zeros(steps, device=device)
        self.device, self.batch_size = device, batch_size
        self.segment, self.seconds, self.mean_loss = 0, 0.0, math.nan
        self.t0 = None
        self.restart()

    def restart(self) -> float:
        """Time from now on; returns the seconds since the last (re)start (0 for the first)."""
        synchronize(self.device)
        now = time.perf_counter()
        since, self.t0 = (now - self.t0 if self.t0 is not None else 0.0), now
        return since

    def check(self, steps_done, parts, state) -> float:
        """check_finite over the epoch's first `steps_done` steps; their mean loss."""
        self.mean_loss = check_finite(self.losses[:steps_done], state.step - steps_done, parts, state)
        return self.mean_loss

    def close_segment(self, state, steps_done) -> None:
        """The steps since the segment began, up to `steps_done`, onto the run's clocks and sums."""
        if steps_done > self.segment:
            self.seconds += state.add_segment(time_since(self.t0, self.device),
                                              (steps_done - self.segment) * self.batch_size,
                                              self.losses[self.segment:steps_done].sum())
        self.segment = steps_done


@dataclasses.dataclass
class Parts:
    """What a run trains and measures with, fixed once it is set up (prepare): the model as built
    (raw_model), as called for evaluation (fwd_model: compiled or not), as stepped (train_model:
    DDP-wrapped or not) and its EMA; the optimiser, the batch streams, the autocast context, the
    config, the process group, the run folder, and the run's length and cadence."""
    config: TrainConfig
    dist: distributed.DistInfo
    device: torch.device
    out_dir: Path
    log: object  # prints above the progress bar (rank 0; a no-op elsewhere)
    precision: str
    raw_model: torch.nn.Module
    fwd_model: torch.nn.Module
    train_model: torch.nn.Module
    ema_model: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    autocast: object
    train_stream: BatchStream
    eval_stream: BatchStream
    val_stream: BatchStream | None
    # the run's length and cadence (TrainConfig.cadence: 0 = by epochs)
    steps_per_epoch: int
    total_steps: int
    num_epochs: int
    warmup: int
    eval_every_steps: int
    checkpoint_every_steps: int
    flops_per_image: int


def record_evaluation(parts: Parts, state: "RunState", epoch, lr) -> str:
    """Evaluate (validation, raw, flip-TTA, EMA), append a metrics row, rewrite metrics.csv, keep
    the selection on validation (best.pt) up to date; the row's text. epoch: epochs done (float)."""
    config, dist, autocast = parts.config, parts.dist, parts.autocast
    t_eval = time.perf_counter()
    val_acc = (evaluate(parts.fwd_model, parts.val_stream, autocast, False, dist)[0]
               if parts.val_stream is not None else None)
    acc, acc_tta = evaluate(parts.fwd_model, parts.eval_stream, autocast, config.tta_flip, dist)
    acc_ema = (evaluate(parts.ema_model, parts.eval_stream, autocast, False, dist)[0]
               if parts.ema_model is not None else None)
    state.clock["eval_s"] += time.perf_counter() - t_eval
    loss_total, correct = distributed.all_reduce_sum(torch.stack([state.loss, state.correct]), dist).tolist()
    images = state.images
    state.metrics.append(dict(
        epoch=epoch if isinstance(epoch, int) else round(epoch, 3), step=state.step, lr=lr,
        train_loss=loss_total / dist.world_size / (images // config.batch_size),
        train_acc=correct / images, val_acc=val_acc, eval_acc=acc, eval_acc_ema=acc_ema, eval_acc_tta=acc_tta,
        images_per_s=images / state.pending_train_s, train_s=state.clock["train_s"],
        elapsed_s=time.perf_counter() - state.t_start))
    state.reset_pending()
    if val_acc is not None and state.select(state.metrics[-1]) and dist.is_main:
        runfolder.save_checkpoint(parts.out_dir / runfolder.BEST, dict(model=parts.raw_model.state_dict(),
                                                                  step=state.step, val_acc=val_acc, eval_acc=acc))
    if dist.is_main:
        runfolder.write_metrics(parts.out_dir, state.metrics)
    return format_eval(state.metrics[-1])


def save_checkpoint(parts: Parts, state: "RunState") -> None:
    """checkpoint.pt: weights, optimiser, EMA, random generators and the run state, as one."""
    state.clock["elapsed_s"] = time.perf_counter() - state.t_start
    sums = distributed.all_reduce_sum(torch.stack([state.loss, state.correct]), parts.dist).cpu()
    if parts.dist.is_main:
        ema = parts.ema_model.state_dict() if parts.ema_model is not None else None
        runfolder.save_checkpoint(parts.out_dir / runfolder.CHECKPOINT, dict(
            model=parts.raw_model.state_dict(), optimizer=parts.optimizer.state_dict(), ema=ema,
            rng=runfolder.rng_state(), config=parts.config.to_dict(), **state.checkpoint_items(sums)))


@dataclasses.dataclass
class RunState:
    """A run's progress besides its weights, optimiser and random generators: what a checkpoint
    carries to resume it (checkpoint_items / from_checkpoint) and what summary.json is made from.

    step, epoch: optimiser steps taken, epochs finished. metrics: the metrics.csv rows. clock:
    cumulative seconds (train_s: optimiser steps; compile_s; eval_s; elapsed_s: wall time).
    loss, correct, images, pending_train_s: the training loss sum (of step means), correct
    predictions, images and step seconds since the last evaluation (a checkpoint may fall between
    two evaluations)."""
    step: int = 0
    epoch: int = 0
    metrics: list = dataclasses.field(default_factory=list)
    clock: dict = dataclasses.field(default_factory=lambda: dict(train_s=0.0, compile_s=0.0, eval_s=0.0,
                                                                 elapsed_s=0.0))
    loss: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    correct: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    images: int = 0
    pending_train_s: float = 0.0
    selected: dict | None = None      # the metrics row with the best validation accuracy so far
    evals_since_best: int = 0
    stopped_early: int | None = None  # the step at which patience ran out
    # this session's, not checkpointed: where it started, the wall clock's origin (elapsed_s
    # continues across resumes), the last epoch checkpointed and the step the next checkpoint is due
    session_start_step: int = 0
    t_start: float = 0.0
    last_checkpoint_epoch: int = 0
    next_checkpoint: int = 0

    def start_session(self, checkpoint_every_steps):
        self.session_start_step, self.last_checkpoint_epoch = self.step, self.epoch
        self.t_start = time.perf_counter() - self.clock["elapsed_s"]
        self.next_checkpoint = self.step + checkpoint_every_steps

    def checkpointed(self, checkpoint_every_steps):
        """A checkpoint was written at the end of epoch `self.epoch`."""
        self.last_checkpoint_epoch, self.next_checkpoint = self.epoch, self.step + checkpoint_every_steps

    def to_device(self, device, keep=True):
        """Move the loss and correct sums to `device` (zeros unless `keep`: other ranks start at 0)."""
        self.loss, self.correct = (t.to(device) if keep else torch.zeros((), device=device)
                                   for t in (self.loss, self.correct))

    def add_segment(self, seconds, images, loss_sum):
        """Steps since the last evaluation or epoch start onto the clocks and sums; returns seconds."""
        self.clock["train_s"] += seconds
        self.pending_train_s += seconds
        self.images += images
        self.loss += loss_sum
        return seconds

    def select(self, row):
        """Keep `row` if its validation accuracy is the best so far (ties: the earlier); True if kept."""
        if self.selected is None or row["val_acc"] > self.selected["val_acc"]:
            self.selected, self.evals_since_best = dict(row), 0
            return True
        self.evals_since_best += 1
        return False

    def stop_early(self, patience):
        """True (and the step recorded) once `patience` evaluations in a row did not improve validation."""
        if patience and self.selected is not None and self.evals_since_best >= patience:
            self.stopped_early = self.step
        return self.stopped_early is not None

    def reset_pending(self):
        self.loss.zero_()
        self.correct.zero_()
        self.images, self.pending_train_s = 0, 0.0

    def checkpoint_items(self, sums):
        """The checkpoint's entries; sums: (loss, correct) summed over ranks, on the CPU."""
        return dict(step=self.step, epoch=self.epoch, metrics=self.metrics, clock=self.clock,
                    pending=dict(loss=sums[0], correct=sums[1], images=self.images, train_s=self.pending_train_s),
                    selection=dict(selected=self.selected, evals_since_best=self.evals_since_best,
                                   stopped_early=self.stopped_early))

    @classmethod
    def from_checkpoint(cls, ckpt):
        pending = ckpt["pending"]
        loss, correct = ((pending["loss"], pending["correct"]) if "loss" in pending
                         else pending["loss_sum"].unbind())  # the layout of earlier versions: one (2,) tensor
        selection = ckpt.get("selection") or {}  # absent in checkpoints of earlier versions
        return cls(step=ckpt["step"], epoch=ckpt["epoch"], metrics=ckpt["metrics"], clock=ckpt["clock"],
                   loss=loss.float().clone(), correct=correct.float().clone(), images=pending["images"],
                   pending_train_s=pending["train_s"], selected=selection.get("selected"),
                   evals_since_best=selection.get("evals_since_best", 0),
                   stopped_early=selection.get("stopped_early"))


def time_since(t0, device):
    """Seconds since t0, the device's queued work included."""
    synchronize(device)
    return time.perf_counter() - t0


def step_line(state, total_steps, lr, evaluation):
    """The log line of an evaluation in a run evaluated by steps."""
    row = state.metrics[-1]
    return (f"step {state.step}/{total_steps} (epoch {row['epoch']:g}): loss {row['train_loss']:.4f}, lr {lr:.2e}, "
            f"{row['images_per_s']:.0f} images/s | {evaluation}")


def check_finite(losses, first_step, parts, state):
    """Stop on a NaN/inf loss (agreed by all ranks), naming the first bad step; otherwise return the
    mean loss so far this epoch. Raising here, before the epoch's checkpoint, keeps the last good
    one on disk."""
    dist, out_dir, last_checkpoint_epoch = parts.dist, parts.out_dir, state.last_checkpoint_epoch
    losses = distributed.all_reduce_sum(losses.clone(), dist) / dist.world_size
    mean = losses.mean().item()  # the one host sync: a NaN/inf anywhere makes the mean non-finite
    if math.isfinite(mean):
        return mean
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad) == 0:  # finite losses so large that their sum overflowed
        return mean
    i = bad[0].item()
    kept = (f"{out_dir / 'checkpoint.pt'} (epoch {last_checkpoint_epoch}) is the last good state"
            if last_checkpoint_epoch else "no checkpoint had been written yet")
    message = (f"loss is {losses[i].item()} at step {first_step + i + 1}; training stopped. {kept}: "
               "lower lr or enable clip_grad")
    if dist.is_main:
        runfolder.write_summary(out_dir, {"status": "diverged", "error": message})
    raise FloatingPointError(message)


def zero_head(model):
    """Zero the classifier (`model.head`), as the paper's fine-tuning (App. B.1.1)."""
    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(f"zero_init_head=True needs a model with a `head` module; {type(model).__name__} has none")
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()


def format_eval(row):
    """`train 28.0%, test 34.4% (flip-TTA 34.3%), 139 s`: the accuracies that were measured."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    text = f"train {pct(row['train_acc'])}, " + (f"val {pct(row['val_acc'])}, " if row.get("val_acc") is not None
                                                 else "") + f"test {pct(row['eval_acc'])}"
    extras = [f"{name} {pct(row[key])}" for name, key in (("EMA", "eval_acc_ema"), ("flip-TTA", "eval_acc_tta"))
              if row[key] is not None]
    return text + (f" ({', '.join(extras)})" if extras else "") + f", {row['elapsed_s']:.0f} s"
