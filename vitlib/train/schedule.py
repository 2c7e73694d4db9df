"""Learning-rate schedule, as a pure function of the optimiser step (nanoGPT's `get_lr`).

A function of the step rather than a stateful scheduler object, so resuming a run needs only the
step number, and a plot of the schedule is one list comprehension.
"""
import math

SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step, *, peak_lr, total_steps, warmup_steps=0, schedule="cosine", min_lr=0.0):
    """Learning rate for optimiser step `step` (0-based).

    Linear warm-up from peak_lr / warmup_steps to peak_lr over the first `warmup_steps` steps, then
    decay towards `min_lr * peak_lr` (min_lr is a ratio), reached just after the last step (as in
    big_vision, so the last step still learns):
    half a cosine (Loshchilov & Hutter 2017), a straight line, or no decay ("constant").
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not supported; allowed: {', '.join(SCHEDULES)}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step={step} is outside [0, total_steps={total_steps})")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in [0, 1)
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        factor = 1.0 - progress
    else:
        factor = 1.0
    return peak_lr * (min_lr + (1.0 - min_lr) * factor)
