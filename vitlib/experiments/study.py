"""Load a study file and expand it into named runs.

A study is a YAML file in `experiments/` that lists the notebook runs behind one result:

    # Study: data size — ViT vs ResNet on CIFAR-10 subsets (Fig. 3/4)
    # Command: python -m vitlib.experiments run experiments/cifar.yaml
    # Expected runtime: ~40 min on one H100
    # Expected result: the ResNet's lead shrinks as the training set grows
    name: cifar                          # default: the file name without .yaml
    output: results/runs/cifar           # default: results/runs/<name>
    defaults: {dataset: cifar10, epochs: 30}
    claims: [data-size]                  # default: every claim of the report
    runs:
      - notebook: notebooks/01_pretrain.ipynb
        name: "{model}-n{train_size}-s{seed}"
        grid: {model: [vit_s4, resnet18_cifar], train_size: [2500, 50000], seed: [0, 1, 2]}
        params: {recipe: vit_small_data}
      - notebook: notebooks/02_finetune.ipynb
        name: "ft-{model}-s{seed}"
        grid: {model: [vit_s4], seed: [0, 1, 2]}
        params: {init: "{runs}/{model}-n50000-s{seed}"}

The header comment must give `Command:`, `Expected runtime:` and `Expected result:` lines, so every
study states how to run it and what it should show.

Runs:
- Each block of `runs` names a `notebook` and runs it once per point of its `grid` (the product of
  the grid's lists, the last key varying fastest), or once without a grid. `params` are fixed for
  the block. Blocks run in order, so a later block may read an earlier block's run folders.
- `defaults` go to every run whose notebook declares them (a report notebook need not declare
  `epochs`); block `params` and `grid` values override them and must be declared by the notebook.
- `name` is a template filled with the run's parameters (and `{study}`); it is required with a grid
  and defaults to the notebook's file name otherwise. Run names must be unique in the study.
- Each run gets the folder `<output>/<run name>/`, passed to the notebook as `out_dir`.
- String parameters are templates too: `{runs}` is the study's output folder, `{out}` the run's own
  folder, `{study}` the study name, `{results}` the results folder the output lies in (`results`
  for `results/runs/<name>`: for 03 and 05, which read all of it), and
  `{<param>}` any other parameter of the run (its value as written). Write `{{` and `}}` for
  literal braces.
- Paths are relative to the directory the command runs from: the repository root.

Claims: `claims` lists the ids of the report's claims the study sets out to judge (those of
`vitlib.report.claims.CLAIM_IDS`, checked by the command line and the report); the report lists
only these for the study, so a claim it never runs is not shown as "not yet run". Without it every
claim is listed.

Overrides (`run --set key=value --output DIR`, for smoke tests on tiny settings): `output` replaces
the study's output, so `{runs}`, `{out}` and `{results}` point inside it; each `overrides` value
(a template too) replaces that parameter in every run whose notebook declares it, after defaults,
params and grid. Run names and the other templates keep the study's own values, so `--only`
globs and `init: "{runs}/<run>"` links mean the same runs as without overrides.
"""

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vitlib.keyvalue import YamlLoader, parse_override, parse_overrides  # noqa: F401 (the runner's --set)

HEADER_LINES = ("Command:", "Expected runtime:", "Expected result:")
STUDY_KEYS = {"name", "output", "defaults", "claims", "runs"}
BLOCK_KEYS = {"notebook", "name", "grid", "params"}
# filled in by the runner or the templates, so a study cannot set them as parameters
RESERVED = {"out_dir", "runs", "out", "study", "results"}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,-]*")


@dataclass(frozen=True)
class Run:
    name: str
    notebook: Path
    folder: Path                                  # <output>/<name>, passed as out_dir
    params: dict = field(default_factory=dict)    # block params + grid point, templates filled
    defaults: dict = field(default_factory=dict)  # study defaults not overridden by the block
    block: int = 0                                # index in `runs`, for messages
    overrides: dict = field(default_factory=dict)  # --set values, templates filled; win over params


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    output: Path
    header: str                                   # the leading comment, without the '#'
    runs: list
    overrides: dict = field(default_factory=dict)  # --set key=value, as given
    output_given: bool = False                     # --output replaced the study's output
    claims: tuple = ()                             # the claim ids it judges; () = all


def load_study(path, *, output=None, overrides=None) -> Study:
    """Read, check and expand a study file; errors name the file and what is wrong.
    `output` and `overrides` are the command line's --output and --set (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} does not exist")
    text = path.read_text()
    header = _header(text)
    missing = [line for line in HEADER_LINES
               if not re.search(rf"^{re.escape(line)}\s*\S", header, re.MULTILINE)]
    if missing:
        raise ValueError(f"{path}: the header comment lacks {', '.join(repr(m) for m in missing)}; "
                         f"a study file opens with '# Command: ...', '# Expected runtime: ...' "
                         f"and '# Expected result: ...' lines")
    try:
        data = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    return expand_study(data, path, header, output=output, overrides=overrides)


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line.strip().lstrip("#").strip())
    return "\n".join(lines).strip()


def expand_study(data, path, header="", *, output=None, overrides=None) -> Study:
    """Turn a parsed study mapping into a Study with one Run per grid point."""
    path = Path(path)
    where = str(path)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a study is a mapping with keys {sorted(STUDY_KEYS)}")
    _check_keys(data, STUDY_KEYS, where)
    name = str(data.get("name") or path.stem)
    output_given = output is not None
    output = Path(output or data.get("output") or f"results/runs/{name}")
    defaults = _mapping(data.get("defaults"), f"{where}: defaults")
    overrides = _mapping(overrides, "--set")
    blocks = data.get("runs")
    if not isinstance(blocks, list) or not blocks:
        raise ValueError(f"{where}: 'runs' must be a non-empty list of blocks with keys {sorted(BLOCK_KEYS)}")
    runs = []
    for i, block in enumerate(blocks):
        runs += _expand_block(block, i, name, output, defaults, overrides, f"{where}: runs[{i}]")
    names = [run.name for run in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: run names are not unique: {', '.join(duplicates)}; "
                         f"put every grid key that varies into the block's name template")
    return Study(name=name, path=path, output=output, header=header, runs=runs,
                 overrides=overrides, output_given=output_given, claims=study_claims(data.get("claims"), where))


def study_claims(value, where, known=None) -> tuple:
    """The `claims` of a study: a list of claim ids (() when absent), each one of `known` when
    given (the report's `vitlib.report.claims.CLAIM_IDS`: the command line and the report check
    them; this package does not import the report)."""
    if value is None or value == ():  # absent (a Study's or StudyInfo's own "all claims")
        return ()
    allowed = f"; allowed: {', '.join(known)}" if known else ""
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: 'claims' must be a non-empty list of claim ids, got {value!r}{allowed}")
    unknown = [v for v in value if known and v not in known]
    if unknown:
        raise ValueError(f"{where}: unknown claim id(s) {', '.join(map(repr, unknown))} in 'claims'{allowed}")
    return tuple(dict.fromkeys(value))


def _expand_block(block, index, study, output, defaults, overrides, where):
    if not isinstance(block, dict) or "notebook" not in block:
        raise ValueError(f"{where}: a block is a mapping with a 'notebook' and optional "
                         f"{sorted(BLOCK_KEYS - {'notebook'})}")
    _check_keys(block, BLOCK_KEYS, where)
    notebook = Path(block["notebook"])
    params = _mapping(block.get("params"), f"{where}: params")
    grid = _mapping(block.get("grid"), f"{where}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: grid value of {key!r} must be a non-empty list, got {values!r} "
                             f"(put fixed values in 'params')")
    both = sorted(set(grid) & set(params))
    if both:
        raise ValueError(f"{where}: {', '.join(both)} in both 'grid' and 'params'")
    if grid and "name" not in block:
        raise ValueError(f"{where}: a block with a grid needs a 'name' template, e.g. "
                         + repr("-".join(f"{k}{{{k}}}" for k in grid)))
    template = str(block.get("name", notebook.stem))
    runs = []
    for point in itertools.product(*grid.values()):
        explicit = {**params, **dict(zip(grid, point))}
        raw = {**defaults, **explicit}                  # every value a template may refer to
        name = _fill(template, {**raw, "study": study}, f"{where}: name")
        if not RUN_NAME.fullmatch(name):
            raise ValueError(f"{where}: run name {name!r} (from {template!r}) must match "
                             f"{RUN_NAME.pattern}: letters, digits and . _ + = , -")
        folder = output / name
        fields = {**raw, "runs": str(output), "out": str(folder), "study": study,
                  **_results_field(output)}
        filled = {k: _fill_value(v, fields, f"{where}: parameter {k!r}") for k, v in raw.items()}
        runs.append(Run(name=name, notebook=notebook, folder=folder,
                        params={k: filled[k] for k in explicit},
                        defaults={k: filled[k] for k in defaults if k not in explicit},
                        block=index,
                        overrides={k: _fill_value(v, fields, f"--set {k}") for k, v in overrides.items()}))
    return runs


def _results_field(output: Path) -> dict:
    """{"results": <results folder>} when the output follows the layout <results>/runs/<study>."""
    return {"results": str(output.parent.parent)} if output.parent.name == "runs" else {}


def _check_keys(mapping, allowed, where):
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(sorted(allowed))}")


def _mapping(value, where) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of parameter names to values, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{where}: parameter name {key!r} is not a Python identifier")
        if key in RESERVED:
            raise ValueError(f"{where}: {key!r} is reserved ({', '.join(sorted(RESERVED))} are "
                             f"filled in by the runner)")
        _check_literal(item, f"{where}: {key}")
    return dict(value)


def _check_literal(value, where):
    """papermill writes parameters as Python literals: JSON-like values only."""
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_literal(item, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: dictionary keys must be strings, got {key!r}")
            _check_literal(item, where)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{where}: {value!r} ({type(value).__name__}) is not a string, number, "
                         f"bool, null, list or mapping; quote it")


def _fill(template: str, fields: dict, where: str) -> str:
    try:
        return template.format_map(fields)
    except KeyError as err:
        if err.args[0] == "results" and "runs" in fields:
            raise ValueError(f"{where}: {{results}} in {template!r} needs an output of the form "
                             f"<results>/runs/<name>, got {fields['runs']!r}") from None
        raise ValueError(f"{where}: unknown field {{{err.args[0]}}} in {template!r}; "
                         f"available: {', '.join(sorted(fields))}") from None
    except (IndexError, ValueError, AttributeError) as err:
        raise ValueError(f"{where}: bad template {template!r} ({err}); "
                         f"write {{{{ and }}}} for literal braces") from None


def _fill_value(value, fields, where):
    if isinstance(value, str):
        return _fill(value, fields, where) if "{" in value or "}" in value else value
    if isinstance(value, list):
        return [_fill_value(item, fields, where) for item in value]
    if isinstance(value, dict):
        return {k: _fill_value(v, fields, where) for k, v in value.items()}
    return value
