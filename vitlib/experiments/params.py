"""Validate a notebook's parameters before it does any work.

Every notebook opens with a cell tagged `parameters` that holds only literal assignments (papermill
injects its own cell right after it to override them), then a cell like

    from vitlib.experiments import notebook_params, validate_params, between
    SPEC = {  # name: (type, allowed values or check, description)
        "model":   (str, vitlib.list_models(), "model name"),
        "epochs":  (int, between(1, 10_000), "training epochs"),
        "lr":      (float, lambda v: v > 0, "peak learning rate, > 0"),
        "out_dir": (str, None, "run folder"),
    }
    params = validate_params(notebook_params(globals(), SPEC), SPEC)

`notebook_params` picks the declared names out of the notebook's globals plus every name papermill
injected, so a mistyped `-p lrr 0.1` is reported instead of silently ignored; `validate_params`
rejects unknown names, wrong types and impossible values with a ValueError that names the
parameter and what is allowed.
"""

import ast
import difflib
import io
from pathlib import Path

# papermill opens the cell it injects with this comment (papermill.parameterize, comment="Parameters")
_INJECTED_MARK = "# Parameters"


def between(low, high):
    """A check for `low <= value <= high` that explains itself in error messages."""
    def check(value):
        return low <= value <= high
    check.allowed = f"between {low} and {high}"
    return check


def at_least(low):
    """A check for `value >= low` that explains itself in error messages."""
    def check(value):
        return value >= low
    check.allowed = f">= {low}"
    return check


def notebook_params(namespace: dict, spec: dict) -> dict:
    """The parameters of a running notebook: the names `spec` declares, read from `namespace`
    (the notebook's `globals()`), plus every name assigned in papermill's injected cell.

    The injected cell is found in IPython's input history (`In`), so outside a kernel only the
    declared names are returned."""
    show_figures_inline()
    given = {name: namespace[name] for name in spec if name in namespace}
    for name in _injected_names(namespace.get("In", ())):
        if name in namespace:
            given[name] = namespace[name]
    for name in PATH_PARAMS & set(given):  # rebound in the notebook too: its code uses the names
        if isinstance(given[name], str) and given[name]:
            given[name] = namespace[name] = project_path(given[name])
    return given


# Parameters that name files or folders: relative values are read from the project's root.
PATH_PARAMS = {"out_dir", "results_dir", "data_dir", "init", "source_run", "cnn_run", "image", "trained_run"}
REPO = Path(__file__).resolve().parents[2]


def project_path(path: str) -> str:
    """`path` as the notebooks mean it: a relative path is relative to the repository root when the
    working directory lies inside the repository (Jupyter starts a kernel in the notebook's own
    folder, `notebooks/`, the batch runner in the root), else to the working directory."""
    cwd = Path.cwd().resolve()
    below_root = (REPO / "notebooks").is_dir() and REPO in cwd.parents
    return str(REPO / path) if below_root and not Path(path).is_absolute() else path


def show_figures_inline() -> None:
    """Show a matplotlib Figure that ends a cell as a PNG, in Jupyter and in papermill's output
    notebook. vitlib draws on bare `Figure` objects (never pyplot, so nothing pops up), which
    IPython shows as `<Figure size ...>` text unless pyplot's inline backend registered a PNG
    formatter; this registers one. Does nothing outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    def png(fig):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()

    shell.display_formatter.formatters["image/png"].for_type(Figure, png)


def assigned_names(source: str) -> list:
    """The names a cell's top-level assignments bind (`x = 1`, `x: int = 1`), in order."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def annotated_types(source: str) -> dict:
    """{name: type name} of a cell's annotated assignments (`steps: int = 140` -> "int"), for the
    plain types a parameters cell uses (int, float, str, bool, dict, list)."""
    return {node.target.id: node.annotation.id for node in ast.parse(source).body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name) and node.annotation.id in PLAIN_TYPES}


PLAIN_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict, "list": list}


def type_problem(name: str, value, type_name: str):
    """Why `value` cannot be parameter `name` of declared type `type_name` (None when it can), by
    validate_params' rules: an int is a float, a bool is never an int."""
    expected = PLAIN_TYPES.get(type_name)
    if expected is None or value is None:
        return None
    if isinstance(value, bool) and type_name != "bool" or not isinstance(value, expected):
        return f"parameter {name!r} must be {type_name}, got {type(value).__name__} {value!r}"
    return None


def _injected_names(history) -> list:
    injected = [src for src in history if isinstance(src, str) and src.startswith(_INJECTED_MARK)]
    return assigned_names(injected[-1]) if injected else []


def validate_params(given: dict, spec: dict) -> dict:
    """Check `given` against `spec` and return the parameters in spec order.

    spec: name -> (type, check, description). `type` is a type or a tuple of types (include
    `type(None)` to allow None); an int is accepted, and converted, where float is expected; a bool
    is never an int. `check` is None, a collection of allowed values, or a callable returning True
    for possible values (give it an `allowed` attribute, as `between` does, to describe them).
    Every problem is reported in one ValueError, each naming its parameter.
    """
    for name, entry in spec.items():
        if not (isinstance(entry, tuple) and len(entry) == 3):
            raise ValueError(f"spec entry {name!r} must be (type, check, description), got {entry!r}")
    problems = []
    for name in given:
        if name not in spec:
            close = difflib.get_close_matches(name, spec, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}; the parameters are: {', '.join(spec)}")
    params = {}
    for name, (types, check, description) in spec.items():
        if name not in given:
            problems.append(f"parameter {name!r} ({description}) was not given")
            continue
        value, problem = _check_one(name, given[name], types, check, description)
        if problem:
            problems.append(problem)
        params[name] = value
    if problems:
        raise ValueError("; ".join(problems))
    return params


def _check_one(name, value, types, check, description):
    types = types if isinstance(types, tuple) else (types,)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    bool_as_int = isinstance(value, bool) and bool not in types
    if bool_as_int or not isinstance(value, types):
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        return value, (f"parameter {name!r} ({description}) must be {expected}, "
                       f"got {type(value).__name__} {value!r}")
    if check is None or value is None:
        return value, None
    if callable(check):
        allowed = getattr(check, "allowed", None)
        if not check(value):
            what = f"must be {allowed} ({description})" if allowed else f"see its description: {description}"
            return value, f"parameter {name!r} = {value!r} is impossible: {what}"
        return value, None
    allowed = list(check)
    if value not in allowed:
        return value, (f"parameter {name!r} = {value!r} is not allowed ({description}); "
                       f"allowed values: {', '.join(repr(a) for a in allowed)}")
    return value, None


def training_spec():
    """The parameters 01_pretrain and 02_finetune share (data, run length, seed, run folder), as
    a SPEC fragment: `SPEC = {**training_spec(), "model": ...}`."""
    from vitlib.data import DATASETS  # here, not at the top: the runner imports this module
    from vitlib.device import PRECISIONS

    return {
        "dataset": (str, list(DATASETS), "dataset name"),
        "data_dir": (str, None, "data folder or archive"),
        "img_size": (int, between(4, 1024), "pixels"),
        "train_size": (int, at_least(0), "images, 0 = all"),
        "epochs": (int, at_least(0), "passes, 0 = the recipe's"),
        "steps": (int, at_least(0), "optimiser steps, 0 = unused"),
        "batch_size": (int, at_least(0), "images per step, 0 = the recipe's"),
        "lr": (float, at_least(0), "peak learning rate, 0 = the recipe's"),
        "train_args": (dict, None, "TrainConfig fields"),
        "precision": (str, PRECISIONS, "auto: bf16 where the hardware computes it natively, else fp32"),
        "seed": (int, at_least(0), "seed"),
        "out_dir": (str, lambda v: v != "", "run folder"),
        "resume": (bool, None, "continue an interrupted run"),
    }
