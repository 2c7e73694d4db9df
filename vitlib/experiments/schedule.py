"""When each planned run of a study may start: in study order, at most `jobs` at once, each after
the runs it reads or follows have settled (`dependencies`, `schedule`), whoever executes them (the
runner's threads, or cluster.py's submitit jobs); `Summary` collects the outcomes."""
from dataclasses import dataclass, field


@dataclass
class Summary:
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    locked: list = field(default_factory=list)  # in use by another runner
    failed: list = field(default_factory=list)  # (run name, error)


def dependencies(plans) -> tuple[dict, dict]:
    """({run name: names of the planned runs it reads}, {run name: names of the runs it follows}).
    A run whose parameters name another planned run's folder (a fine-tuning's `init`, an
    inspection's source run) reads it: it starts after it and fails if it did not complete. A run
    whose parameters name a folder that holds other runs (a comparison's or a report's
    `results_dir`) collects them: it starts once every run that collects nothing, and every
    collector before it in the study, has settled, whether they completed or not."""
    folders = {str(p.run.folder): p.run.name for p in plans}

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from strings(v)

    texts = {p.run.name: [t for t in strings({k: v for k, v in p.params.items() if k != "out_dir"}) if t]
             for p in plans}
    reads = {name: {other for text in texts[name] for folder, other in folders.items()
                    if other != name and (text == folder or text.startswith(folder + "/"))}
             for name in texts}
    collectors = [name for name in texts if any(folder.startswith(text.rstrip("/") + "/")
                                                for text in texts[name] for folder in folders)]
    follows = {name: set() for name in texts}
    for k, name in enumerate(collectors):
        follows[name] = {other for other in texts if other not in collectors} | set(collectors[:k])
    return reads, follows


def schedule(plans, jobs, start, finish, summary: Summary, echo, wait):
    """Start the plans in study order, at most `jobs` at once, each only once the runs it reads or
    follows (dependencies) have settled; a run whose input failed fails at once, naming it.
    start(i, plan) -> a handle with .done(); finish(handle) records its outcome in `summary`;
    wait(handles) returns once one of the running handles may be done."""
    reads, follows = dependencies(plans)
    waiting, running, total = list(enumerate(plans, 1)), {}, len(plans)
    while waiting or running:
        ok = set(summary.done) | set(summary.skipped)
        settled = ok | set(summary.locked) | {name for name, _ in summary.failed}
        for item in list(waiting):
            i, plan = item
            if len(running) >= jobs:
                break
            if not reads[plan.run.name] | follows[plan.run.name] <= settled:
                continue  # an input is still running or waiting
            waiting.remove(item)
            missing = sorted(reads[plan.run.name] - ok)
            if missing:
                error = f"its input run {', '.join(missing)} did not complete"
                echo(f"[{i}/{total}] {plan.run.name} failed: {error}")
                summary.failed.append((plan.run.name, error))
                continue
            running[start(i, plan)] = plan
        finished = [handle for handle in running if handle.done()]
        for handle in finished:
            running.pop(handle)
            finish(handle)
        if running and not finished:
            wait(list(running))
