"""Validate a notebook's parameters before it does any work.

Every notebook opens with a cell tagged `parameters` that declares each parameter once, with its
type and what it means (papermill injects its own cell right after it to override the values):

    model: str = "vit_ti4"  # model name, one of vitlib.list_models()
    epochs: int = 10  # training epochs
    out_dir: str = "scratch/run"  # run folder

and then a cell that adds what a type cannot say, the allowed values or a check per name:

    from vitlib.experiments import between, notebook_params
    params = notebook_params(globals(), {"model": vitlib.list_models(), "epochs": between(1, 10_000)})

`notebook_params` reads the names, types and descriptions from the parameters cell, picks the
values out of the notebook's globals plus every name papermill injected, so a mistyped
`-p lrr 0.1` is reported instead of silently ignored, and rejects unknown names, wrong types and
impossible values with one ValueError that names each parameter and what is allowed.
"""

import ast
import difflib
import io
import tokenize
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


def satisfies(predicate, allowed: str):
    """A check that explains itself in error messages: `satisfies(lambda v: v % 2 == 0, "even")`."""
    def check(value):
        return bool(predicate(value))
    check.allowed = allowed
    return check


NOT_EMPTY = satisfies(lambda v: v != "", "not empty")


def notebook_params(namespace: dict, checks: dict | None = None, *, cell: str | None = None) -> dict:
    """The validated parameters of a running notebook, in the order its parameters cell declares
    them (validate_params' rules).

    namespace: the notebook's `globals()`. checks: {name: allowed values or a check} for the names
    that need more than their type. cell: the parameters cell's source; by default the one in
    IPython's input history (`In`): the latest cell made only of annotated assignments, before
    papermill's injected cell. Relative paths among PATH_PARAMS are rebound in `namespace` too
    (project_path)."""
    cell = cell if cell is not None else parameters_cell(namespace.get("In", ()))
    if cell is None:
        raise ValueError("no parameters cell has run: run the notebook's first code cell (its "
                         "`name: type = value  # description` lines) before this one")
    spec = params_spec(cell, checks or {})
    return validate_params(given_params(namespace, spec), spec)


def params_spec(cell: str, checks: dict) -> dict:
    """validate_params' spec of a parameters cell: {name: (type, check, description)}."""
    declared = cell_params(cell)
    undeclared = sorted(set(checks) - set(declared))
    if undeclared:
        raise ValueError(f"checks for {', '.join(undeclared)}: the parameters cell declares no such name")
    return {name: (SPEC_TYPES[type_name], checks.get(name), description)
            for name, (type_name, description) in declared.items()}


def cell_params(cell: str) -> dict:
    """{name: (type name, description)} of a parameters cell: every `name: type = value  #
    description` line, in order. Raises ValueError for a line without a plain type (int, float,
    str, bool, dict, list)."""
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(cell).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(cell).body:
        if _plain_type(node) is None:
            raise ValueError(f"parameters cell line {node.lineno}: declare each parameter as "
                             f"`name: type = value  # description` with type one of {', '.join(PLAIN_TYPES)}")
        out[node.target.id] = (_plain_type(node), comments.get(node.end_lineno, node.target.id))
    return out


def _plain_type(node) -> str | None:
    """The type name of `name: type = value` with a plain type (PLAIN_TYPES), else None."""
    if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name) and node.annotation.id in PLAIN_TYPES):
        return node.annotation.id
    return None


def parameters_cell(history) -> str | None:
    """The latest cell of IPython's input history `In` made only of annotated assignments (the
    parameters cell; papermill's injected cell has plain ones), or None."""
    for source in reversed(list(history)):
        if isinstance(source, str) and not source.startswith(_INJECTED_MARK) and _only_annotations(source):
            return source
    return None


def _only_annotations(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, ast.AnnAssign) for node in body)


def given_params(namespace: dict, names) -> dict:
    """The values of `names` in `namespace` plus every name assigned in papermill's injected cell
    (found in IPython's input history `In`; outside a kernel only `names`), paths among
    PATH_PARAMS made project paths (in `namespace` too: the notebook's code uses the names)."""
    show_figures_inline()
    given = {name: namespace[name] for name in names if name in namespace}
    for name in _injected_names(namespace.get("In", ())):
        if name in namespace:
            given[name] = namespace[name]
    for name in PATH_PARAMS & set(given):
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
    return {node.target.id: _plain_type(node) for node in ast.parse(source).body if _plain_type(node)}


PLAIN_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict, "list": list}
SPEC_TYPES = {**PLAIN_TYPES, "float": float}  # validate_params converts an int given for a float


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


def training_checks() -> dict:
    """The checks of the parameters 01_pretrain and 02_finetune share (data, run length, seed, run
    folder): `notebook_params(globals(), {**training_checks(), "model": ...})`."""
    from vitlib.data import DATASETS  # here, not at the top: the runner imports this module
    from vitlib.device import PRECISIONS

    return {"dataset": list(DATASETS), "img_size": between(4, 1024), "train_size": at_least(0),
            "epochs": at_least(0), "steps": at_least(0), "batch_size": at_least(0), "lr": at_least(0),
            "precision": list(PRECISIONS), "seed": at_least(0), "out_dir": NOT_EMPTY}
