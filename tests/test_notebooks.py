"""The notebooks: committed clean, parameters documented for papermill, and every one of them
executed end to end by the batch runner on tiny settings (digits, CPU)."""
import ast
import json
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from vitlib.experiments import load_study, python_kernel, run_study

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_exist():
    assert [nb.name for nb in NOTEBOOKS] == ["00_how_vit_works.ipynb", "01_pretrain.ipynb", "02_finetune.ipynb",
                                             "03_vit_vs_cnn.ipynb", "04_inspect_vit.ipynb", "05_report.ipynb",
                                             "06_attention.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_is_literals_each_typed_and_documented(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    for heading in ("**Question.**", "**The paper's answer**", "**Runtime.**"):
        assert heading in first.source, f"{path.name}: the first cell needs {heading}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells[1] is tagged[0]
    assigned = []
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: only annotated assignments in the parameters cell"
        ast.literal_eval(node.value)  # a literal, nothing computed
        assigned.append(node.target.id)
    # what `papermill --help-notebook` shows: every parameter with its type and a description
    inspected = {p.name: p for p in PythonTranslator.inspect(tagged[0])}
    assert sorted(inspected) == sorted(assigned), f"{path.name}: papermill cannot parse some parameters"
    for p in inspected.values():
        assert p.inferred_type_name not in ("None", "") and p.help, f"{path.name}: {p.name} needs a type and a comment"
    assert "out_dir" in inspected


TINY_STUDY = """\
# Study: tiny end-to-end check of every notebook (tests)
# Command: pytest tests/test_notebooks.py
# Expected runtime: about a minute on 2 CPU cores
# Expected result: every run completes except `bad-size`, which fails naming img_size
name: tiny
output: {out}/runs/tiny
defaults: {{dataset: digits, img_size: 16, seed: 0}}
runs:
  - notebook: {nb}/00_how_vit_works.ipynb
    name: how
    params: {{image_size: 64, patch_size: 16, max_tokens: 256}}
  - notebook: {nb}/01_pretrain.ipynb
    name: vit
    params: {{model: vit_ti4, model_args: {{depth: 1, embed_dim: 32, num_heads: 2, mlp_dim: 64}},
             train_size: 400, steps: 6, batch_size: 32, train_args: {{augment: {{}}, warmup_steps: 2}}}}
  - notebook: {nb}/01_pretrain.ipynb
    name: bad-size
    params: {{model: vit_ti4, img_size: -3}}
  - notebook: {nb}/01_pretrain.ipynb
    name: resnet
    params: {{model: resnet18_cifar, model_args: {{blocks: [1, 1, 1, 1], widths: [8, 8, 8, 8]}},
             recipe: resnet_cifar, train_size: 400, steps: 6, batch_size: 32,
             train_args: {{augment: {{}}, warmup_steps: 2}}}}
  - notebook: {nb}/02_finetune.ipynb
    name: finetune
    params: {{init: "{{runs}}/vit", img_size: 32, train_size: 400, steps: 4, batch_size: 32,
             train_args: {{warmup_steps: 1}}, few_shot: [1, 2], few_shot_seeds: 2}}
  - notebook: {nb}/03_vit_vs_cnn.ipynb
    name: compare
    params: {{results_dir: "{out}", study_name: tiny}}
  - notebook: {nb}/04_inspect_vit.ipynb
    name: inspect
    params: {{source_run: "{{runs}}/vit", cnn_run: "{{runs}}/resnet", num_images: 8}}
  - notebook: {nb}/06_attention.ipynb
    name: attention
    params: {{run: "{{runs}}/vit", interactive: false}}
  - notebook: {nb}/05_report.ipynb
    name: report
    params: {{results_dir: "{out}"}}
"""


def test_every_notebook_runs_through_the_batch_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(TINY_STUDY.format(out=tmp_path / "results", nb=ROOT / "notebooks"))
    lines = []
    summary = run_study(load_study(study_file), show_output=False, echo=lines.append)
    assert sorted(summary.done) == sorted(["how", "vit", "resnet", "finetune", "compare", "inspect", "attention",
                                           "report"]), "\n".join(lines)
    assert summary.done.index("report") == len(summary.done) - 1
    (failed, error), = summary.failed
    assert failed == "bad-size" and "img_size" in error and "-3" in error

    runs = tmp_path / "results" / "runs" / "tiny"
    vit = json.loads((runs / "vit" / "result.json").read_text())
    assert vit["kind"] == "train" and vit["train_size"] == 400 and 0 <= vit["top1"] <= 100
    assert vit["command"].endswith("--only vit") and vit["parameters"]["steps"] == 6
    assert (runs / "vit" / "01_pretrain.ipynb").is_file() and (runs / "vit" / "checkpoint.pt").is_file()
    finetune = json.loads((runs / "finetune" / "result.json").read_text())
    assert finetune["img_size"] == 32 and finetune["pretrain_img_size"] == 16
    assert set(finetune["few_shot"]) == {"1", "2"} and finetune["scratch_top1"] is not None
    inspect = json.loads((runs / "inspect" / "result.json").read_text())
    assert len(inspect["attention_distance"]) == 1 and len(inspect["erf_radius"]["resnet18_cifar"]) == 4
    for name in ("filters", "pos_similarity", "attention_distance", "rollout", "inductive_bias"):
        assert (runs / "inspect" / "figures" / f"inspect_{name}.png").is_file()
    assert (runs / "compare" / "tables" / "data_size.csv").is_file()
    # every figure a notebook shows is a PNG in its executed copy (not "<Figure size ...>" text)
    for run, notebook, figures in (("how", "00_how_vit_works", 4), ("vit", "01_pretrain", 1),
                                   ("finetune", "02_finetune", 1), ("compare", "03_vit_vs_cnn", 2),
                                   ("inspect", "04_inspect_vit", 4), ("attention", "06_attention", 2)):
        outputs = [o for c in nbformat.read(runs / run / f"{notebook}.ipynb", as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= figures, notebook
        assert not any(str(o.get("data", {}).get("text/plain", "")).startswith("<Figure size")
                       and "image/png" not in o.get("data", {}) for o in outputs), notebook
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "not yet run" in report and "results/runs/tiny/vit" in report

    # re-running skips what completed; the failed run is tried (and fails) again
    lines.clear()
    summary = run_study(load_study(study_file), show_output=False, echo=lines.append)
    # (in study order, but the comparison and the report, which collect every run, last)
    assert summary.skipped == ["how", "vit", "resnet", "finetune", "inspect", "attention", "compare", "report"]
    assert [name for name, _ in summary.failed] == ["bad-size"]


def test_a_training_notebook_run_twice_gives_the_same_model(tmp_path):
    """Same parameters, same seed: the same initialisation, batches and weights (CPU)."""
    import papermill
    import torch

    params = dict(model="vit_ti4", model_args={"depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_dim": 64},
                  train_size=200, steps=3, batch_size=32, train_args={"augment": {}, "warmup_steps": 1}, seed=3)
    weights = []
    with python_kernel() as kernel:  # this interpreter's kernel, whatever kernel specs the machine has
        for name in ("a", "b"):
            out = tmp_path / name
            papermill.execute_notebook(str(ROOT / "notebooks" / "01_pretrain.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                       parameters={**params, "out_dir": str(out)}, progress_bar=False,
                                       kernel_name=kernel, cwd=str(ROOT))
            weights.append(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
