"""The study runner: study files, planning, papermill execution, and the notebooks' parameter checks.

Notebooks are built here with nbformat; each executed one costs a kernel start (~3 s), so only
six are executed in the whole file, and only one of them imports vitlib (and with it torch)."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vitlib.experiments import at_least, between, load_study, notebook_params, plan_study, run_study, validate_params
from vitlib.experiments.__main__ import main
from vitlib.experiments.cluster import run_on_executor
from vitlib.experiments.params import cell_params, given_params, satisfies
from vitlib.experiments.runner import command_line
from vitlib.experiments.study import expand_study
from vitlib.keyvalue import parse_override

HEADER = """# Study: a test study
# Command: python -m vitlib.experiments run study.yaml
# Expected runtime: seconds
# Expected result: runs complete
"""

CHECK_CELL = """\
from vitlib.experiments import at_least, notebook_params
params = notebook_params(globals(), {"x": at_least(0), "mode": ["a", "b"]})
"""

WORK_CELL = """\
import json, sys, pathlib
print("progress on stderr", file=sys.stderr)
pathlib.Path(out_dir, "result.json").write_text(json.dumps({"x": x, "python": sys.executable}))
"""

RESUME_CELL = """\
import json, pathlib
partial = pathlib.Path(out_dir, "partial.txt").exists()
pathlib.Path(out_dir, "seen.json").write_text(json.dumps({"resume": resume, "partial": partial}))
"""


def make_notebook(path, params_source, *cells):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(params_source)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"), params,
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(path))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tmp folder as the repository root, with the test notebooks in it."""
    monkeypatch.chdir(tmp_path)
    make_notebook(tmp_path / "work.ipynb",
                  'x: int = 1  # a count\nmode: str = "a"  # the mode\nout_dir: str = "out"  # run folder',
                  CHECK_CELL, WORK_CELL)
    make_notebook(tmp_path / "light.ipynb",  # no vitlib import: a kernel start is all it costs
                  'x = 1\nmode = "a"\nout_dir = "out"', WORK_CELL)
    make_notebook(tmp_path / "resumable.ipynb", 'out_dir = "out"\nresume = False', RESUME_CELL)
    return tmp_path


def write_study(path, body):
    Path(path).write_text(HEADER + body)
    return load_study(path)


# ---------------------------------------------------------------- study files

def test_grid_expansion_names_and_templates():
    data = {"name": "s", "defaults": {"mode": "a", "epochs": 3},
            "runs": [{"notebook": "nb/pre.ipynb", "name": "{model}-s{seed}",
                      "grid": {"model": ["vit", "res"], "seed": [0, 1]}, "params": {"lr": 0.5}},
                     {"notebook": "nb/ft.ipynb", "name": "ft-{model}",
                      "grid": {"model": ["vit"]},
                      "params": {"init": "{runs}/{model}-s1", "log": "{out}/log.txt",
                                 "title": "{study}: {{literal}}", "epochs": 9}}]}
    study = expand_study(data, "experiments/s.yaml")
    assert study.output == Path("results/runs/s")
    assert [r.name for r in study.runs] == ["vit-s0", "vit-s1", "res-s0", "res-s1", "ft-vit"]
    first, ft = study.runs[0], study.runs[-1]
    assert first.params == {"lr": 0.5, "model": "vit", "seed": 0}
    assert first.defaults == {"mode": "a", "epochs": 3}
    assert first.folder == Path("results/runs/s/vit-s0") and first.block == 0
    assert ft.params == {"init": "results/runs/s/vit-s1", "log": "results/runs/s/ft-vit/log.txt",
                         "title": "s: {literal}", "epochs": 9, "model": "vit"}
    assert ft.defaults == {"mode": "a"}  # epochs is overridden by the block


@pytest.mark.parametrize("block, message", [
    ({"notebook": "a.ipynb", "name": "r", "grid": {"x": [1, 2]}}, "not unique.*name template"),
    ({"notebook": "a.ipynb", "grid": {"x": [1, 2]}}, "needs a 'name' template"),
    ({"notebook": "a.ipynb", "name": "r{x}", "grid": {"x": 3}}, "'x' must be a non-empty list"),
    ({"notebook": "a.ipynb", "name": "r{x}", "grid": {"x": [1]}, "params": {"x": 2}}, "x in both"),
    ({"notebook": "a.ipynb", "params": {"out_dir": "o"}}, "'out_dir' is reserved"),
    ({"notebook": "a.ipynb", "name": "r/{x}", "grid": {"x": [1]}}, "run name 'r/1'"),
    ({"notebook": "a.ipynb", "params": {"p": "{runs}/{nope}"}}, r"parameter 'p'.*\{nope\}.*available"),
    ({"notebook": "a.ipynb", "epochs": 3}, "unknown key.*'epochs'"),
])
def test_bad_blocks_are_refused_with_the_reason(block, message):
    with pytest.raises(ValueError, match=message):
        expand_study({"runs": [block]}, "s.yaml")


def test_header_lines_are_required(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("# Command: python -m vitlib.experiments run s.yaml\n"
                    "# Expected result: something\nruns: [{notebook: a.ipynb}]\n")
    with pytest.raises(ValueError, match=r"s\.yaml.*lacks 'Expected runtime:'"):
        load_study(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_study(tmp_path / "missing.yaml")


def test_study_file_reads_exponent_floats_and_header(tmp_path):
    study = write_study(tmp_path / "s.yaml", "runs: [{notebook: a.ipynb, params: {lr: 1e-4, n: 10}}]\n")
    assert study.name == "s" and study.runs[0].params == {"lr": 1e-4, "n": 10}
    assert study.header.startswith("Study: a test study\nCommand:")


# ---------------------------------------------------------------- validate_params

SPEC = {"model": (str, ["vit", "res"], "model name"), "lr": (float, lambda v: v > 0, "rate, > 0"),
        "epochs": (int, between(1, 100), "epochs"), "init": ((str, type(None)), None, "checkpoint")}


def test_validate_params_accepts_and_converts():
    params = validate_params({"epochs": 5, "lr": 1, "model": "vit", "init": None}, SPEC)
    assert params == {"model": "vit", "lr": 1.0, "epochs": 5, "init": None}
    assert list(params) == list(SPEC) and isinstance(params["lr"], float)


@pytest.mark.parametrize("change, message", [
    ({"lrr": 0.1}, r"unknown parameter 'lrr' \(did you mean 'lr'\?\); the parameters are: model, lr"),
    ({"epochs": "5"}, "parameter 'epochs' .*must be int, got str '5'"),
    ({"epochs": True}, "parameter 'epochs' .*must be int, got bool"),
    ({"epochs": 0}, "parameter 'epochs' = 0 is impossible: must be between 1 and 100"),
    ({"lr": -1.0}, r"parameter 'lr' = -1.0 is impossible: see its description: rate, > 0"),
    ({"model": "vgg"}, "parameter 'model' = 'vgg' is not allowed .*allowed values: 'vit', 'res'"),
    ({"init": 3}, "parameter 'init' .*must be str or None"),
])
def test_validate_params_names_the_parameter(change, message):
    given = {"model": "vit", "lr": 0.1, "epochs": 5, "init": "x.pt", **change}
    with pytest.raises(ValueError, match=message):
        validate_params(given, SPEC)


def test_validate_params_reports_missing_and_all_problems_at_once():
    with pytest.raises(ValueError, match="'lr' .*was not given; parameter 'epochs' = 500"):
        validate_params({"model": "vit", "epochs": 500, "init": None}, SPEC)
    with pytest.raises(ValueError, match="spec entry 'a'"):
        validate_params({}, {"a": (int, None)})
    assert at_least(2)(2) and not at_least(2)(1)


def test_notebook_params_finds_injected_names():
    history = ["", 'model = "vit"\nlr = 0.1', '# Parameters\nlr = 0.2\nlrr = 0.3\n', "check cell"]
    namespace = {"In": history, "model": "vit", "lr": 0.2, "lrr": 0.3, "np": object()}
    assert given_params(namespace, ["model", "lr"]) == {"model": "vit", "lr": 0.2, "lrr": 0.3}
    assert given_params({"model": "vit", "other": 1}, ["model"]) == {"model": "vit"}


PARAMS_CELL = """\
model: str = "vit"  # model name, vit or res
lr: float = 0.1  # peak learning rate
steps: int = 10
"""


def test_the_parameters_cell_declares_names_types_and_descriptions_once():
    assert cell_params(PARAMS_CELL) == {"model": ("str", "model name, vit or res"),
                                            "lr": ("float", "peak learning rate"), "steps": ("int", "steps")}
    history = ["", "import vitlib", PARAMS_CELL, '# Parameters\nlr = 1\nlrr = 0.3\n', "check cell"]
    namespace = {"In": history, "model": "vit", "lr": 1, "steps": 10}
    assert notebook_params(namespace, {"model": ["vit", "res"]}) == {"model": "vit", "lr": 1.0, "steps": 10}
    with pytest.raises(ValueError, match="unknown parameter 'lrr'"):
        notebook_params({**namespace, "lrr": 0.3}, {})
    with pytest.raises(ValueError, match=r"parameter 'model' = 'vgg' is not allowed \(model name, vit or res\)"):
        notebook_params({**namespace, "model": "vgg"}, {"model": ["vit", "res"]})
    with pytest.raises(ValueError, match="parameter 'steps' .*must be int, got str"):
        notebook_params({**namespace, "steps": "ten"}, {})
    with pytest.raises(ValueError, match="must be > 0"):
        notebook_params({**namespace, "lr": -1}, {"lr": satisfies(lambda v: v > 0, "> 0")})
    with pytest.raises(ValueError, match="checks for depth: the parameters cell declares no such name"):
        notebook_params(namespace, {"depth": at_least(1)})
    with pytest.raises(ValueError, match="no parameters cell has run"):
        notebook_params({"In": ["", "x = 1"]}, {})
    with pytest.raises(ValueError, match="line 1: declare each parameter as `name: type = value"):
        cell_params("x = 1\n")


def test_path_parameters_resolve_from_the_repository_root(monkeypatch, tmp_path):
    from vitlib.experiments.params import REPO
    monkeypatch.chdir(REPO / "notebooks")  # where Jupyter starts a notebook's kernel
    namespace = {"results_dir": "results", "out_dir": "scratch/x", "data_dir": "", "model": "vit"}
    given = given_params(namespace, list(namespace))
    assert given["results_dir"] == namespace["results_dir"] == str(REPO / "results")
    assert given["out_dir"] == str(REPO / "scratch" / "x") and given["data_dir"] == ""
    assert given["model"] == "vit"  # not a path
    monkeypatch.chdir(REPO)  # the batch runner's working directory: paths stay as written
    assert given_params({"out_dir": "scratch/x"}, ["out_dir"]) == {"out_dir": "scratch/x"}
    monkeypatch.chdir(tmp_path)  # outside the repository: the working directory's
    assert given_params({"out_dir": "runs/x"}, ["out_dir"]) == {"out_dir": "runs/x"}


# ---------------------------------------------------------------- planning and CLI (no kernel)

def test_dry_run_and_parameter_names_checked_against_the_notebook(project, capsys):
    (project / "s.yaml").write_text(HEADER + """\
defaults: {mode: b}
runs:
  - {notebook: work.ipynb, name: "w{x}", grid: {x: [1, 2]}}
  - {notebook: work.ipynb, name: typo, params: {xx: 1}}
  - {notebook: missing.ipynb, name: gone}
  - {notebook: work.ipynb, name: words, params: {x: three, mode: 2}}
""")
    assert main(["run", "s.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[1/5] w1 would run: new" in out and "[2/5] w2 would run: new" in out
    assert ("[3/5] typo would fail: ValueError: unknown parameter(s) 'xx' (did you mean 'x'?) "
            "for work.ipynb; its parameters cell declares: x, mode, out_dir") in out
    assert "[4/5] gone would fail: FileNotFoundError" in out
    # the types the parameters cell declares are checked as the notebook would (x: int, mode: str)
    assert ("[5/5] words would fail: ValueError: parameter 'x' must be int, got str 'three'; parameter 'mode' "
            "must be str, got int 2 (work.ipynb's parameters cell)") in out
    assert "would run 2, skip 0, fail 3" in out
    assert not (project / "results").exists()

    assert main(["run", "s.yaml", "--list", "--only", "w*"]) == 0
    out = capsys.readouterr().out
    assert "Expected runtime: seconds" in out and "mode=b" in out
    assert "w1  work.ipynb  x=1" in out and "typo" not in out
    assert main(["run", "s.yaml", "--only", "typo", "--quiet"]) == 1  # fails before any kernel starts
    assert "done 0, skipped 0, failed 1" in capsys.readouterr().out
    assert main(["run", "s.yaml", "--only", "nothing*"]) == 2
    assert "no run of s.yaml matches nothing*" in capsys.readouterr().err


def test_a_study_names_only_the_reports_claims(project, capsys):
    """`claims` lists claim ids of the report: a list of them is kept in order, anything else stops
    the command line before any run folder is made."""
    study = write_study("s.yaml", "claims: [compute, data-size, compute]\nruns: [{notebook: work.ipynb}]\n")
    assert study.claims == ("compute", "data-size")
    with pytest.raises(ValueError, match="'claims' must be a non-empty list of claim ids, got 'compute'"):
        write_study("s.yaml", "claims: compute\nruns: [{notebook: work.ipynb}]\n")
    write_study("s.yaml", "output: runs\nclaims: [data-size, pos-embedding]\nruns: [{notebook: work.ipynb}]\n")
    assert main(["run", "s.yaml", "--quiet"]) == 2
    assert ("s.yaml: unknown claim id(s) 'pos-embedding' in 'claims'; allowed: data-size, "
            in capsys.readouterr().err) and not (project / "runs").exists()


def test_defaults_no_notebook_declares_are_an_error(project):
    study = write_study("s.yaml", "defaults: {epochs: 3}\nruns: [{notebook: work.ipynb}]\n")
    with pytest.raises(ValueError, match="no notebook declares the default.*epochs"):
        plan_study(study)


def test_plan_of_unfinished_folders(project):
    study = write_study("s.yaml", "output: runs\nruns:\n"
                        "  - {notebook: work.ipynb, name: 'w{x}', grid: {x: [1, 2, 3]}}\n")
    own_only, no_record, empty = (project / "runs" / n for n in ("w1", "w2", "w3"))
    for folder in (own_only, no_record, empty):
        folder.mkdir(parents=True)
    (own_only / "run.json").write_text(json.dumps({"status": "failed"}))
    (own_only / "work.ipynb").write_text("{}")
    (no_record / "checkpoint.pt").write_text("partial")
    plans = plan_study(study)
    assert [p.action for p in plans] == ["run"] * 3
    assert plans[0].note == "last attempt failed; running again" and plans[0].stale is None
    assert "did not finish; its folder is moved aside to runs/w2.stale-" in plans[1].note
    assert plans[2].note == "new"
    assert plans[1].params == {"x": 2, "out_dir": "runs/w2"}


def test_cli_entry_point_runs_as_a_module(project):
    (project / "s.yaml").write_text(HEADER + "runs: [{notebook: work.ipynb, name: one}]\n")
    out = subprocess.run([sys.executable, "-m", "vitlib.experiments", "run", "s.yaml", "--list"],
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert "one  work.ipynb" in out.stdout


# ---------------------------------------------------------------- execution (kernels)

def test_study_runs_fails_one_and_skips_on_rerun(project, capsys, monkeypatch):
    # A `python3` kernel spec for another interpreter must not win over this interpreter's.
    bogus = project / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(json.dumps(
        {"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "wrong", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(project / "jupyter"))
    body = """\
output: runs
defaults: {mode: a}
runs:
  - {notebook: light.ipynb, name: "x{x}", grid: {x: [1, 2]}}
  - {notebook: work.ipynb, name: bad, params: {x: 3, mode: zzz}}
  - {notebook: work.ipynb, name: typo, params: {xx: 3}}
"""
    study = write_study("s.yaml", body)
    summary = run_study(study)
    out, err = capsys.readouterr()
    assert summary.done == ["x1", "x2"] and summary.skipped == []
    assert [name for name, _ in summary.failed] == ["bad", "typo"]
    bad_error = dict(summary.failed)["bad"]
    assert bad_error.startswith("ValueError: parameter 'mode' = 'zzz' is not allowed")
    assert "allowed values: 'a', 'b'" in bad_error
    assert "[1/4] x1 running light.ipynb (new)" in out and "[1/4] x1 done in" in out
    assert "[3/4] bad failed after" in out and "done 2, skipped 0, failed 2" in out
    assert "  failed typo: ValueError: unknown parameter(s) 'xx'" in out
    assert "progress on stderr" in err  # the notebook's own output reaches the terminal
    assert __import__("os").environ["JUPYTER_PATH"] == str(project / "jupyter")  # restored

    result = json.loads((project / "runs/x2/result.json").read_text())
    assert result == {"x": 2, "python": sys.executable}
    record = json.loads((project / "runs/x2/run.json").read_text())
    assert record["status"] == "complete" and record["notebook"] == "light.ipynb"
    assert record["parameters"] == {"mode": "a", "x": 2, "out_dir": "runs/x2"}
    assert record["duration_s"] > 0 and "git_commit" in record and record["resumed"] is False
    failed = json.loads((project / "runs/bad/run.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == bad_error
    executed = nbformat.read(str(project / "runs/bad/work.ipynb"), as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    assert not (project / "runs/typo").exists()  # refused before it started

    again = run_study(study, only=["x*"])  # finished runs are not executed again
    assert again.skipped == ["x1", "x2"] and again.done == again.failed == []
    assert "[1/2] x1 skipped (complete)" in capsys.readouterr().out

    changed = write_study("s.yaml", body.replace("mode: a", "mode: b"))
    with pytest.raises(ValueError, match=r"runs/x1: finished with other parameters \(mode: 'a' -> 'b'\)"):
        run_study(changed)


def test_killed_runs_are_rerun_cleanly(project):
    study = write_study("s.yaml", "output: runs\nruns:\n"
                        "  - {notebook: light.ipynb, name: plain, params: {x: 5}}\n"
                        "  - {notebook: resumable.ipynb, name: res}\n")
    for name, notebook, params in [("plain", "light.ipynb", {"x": 5, "out_dir": "runs/plain"}),
                                   ("res", "resumable.ipynb", {"out_dir": "runs/res"})]:
        folder = project / "runs" / name
        folder.mkdir(parents=True)  # what a runner killed mid-run leaves behind
        (folder / "run.json").write_text(json.dumps(
            {"status": "running", "notebook": notebook, "parameters": params}))
        (folder / notebook).write_text("half-written notebook")
        (folder / "partial.txt").write_text("from the killed run")

    summary = run_study(study, show_output=False)
    assert summary.done == ["plain", "res"] and summary.failed == []

    # No `resume` parameter: the old folder is kept aside, the run starts from an empty folder.
    (stale,) = (project / "runs").glob("plain.stale-*")
    assert (stale / "partial.txt").read_text() == "from the killed run"
    assert sorted(p.name for p in (project / "runs/plain").iterdir()) == [
        "light.ipynb", "result.json", "run.json"]
    # A `resume` parameter: resumed in place with resume=True, the notebook's files kept.
    assert json.loads((project / "runs/res/seen.json").read_text()) == {"resume": True, "partial": True}
    record = json.loads((project / "runs/res/run.json").read_text())
    assert record["status"] == "complete" and record["resumed"] is True
    assert record["parameters"] == {"out_dir": "runs/res"}  # resume is not part of the run's identity
    nbformat.read(str(project / "runs/res/resumable.ipynb"), as_version=4)  # rewritten, valid
    assert run_study(study, show_output=False).skipped == ["plain", "res"]


def test_an_unreadable_run_record_fails_that_run_naming_the_file(project):
    study = write_study("s.yaml", "output: runs\nruns:\n"
                        "  - {notebook: work.ipynb, name: 'w{x}', grid: {x: [1, 2]}}\n")
    folder = project / "runs" / "w1"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text('{"status": "compl')
    (folder / "result.json").write_text("{}")
    plans = plan_study(study)
    assert [p.action for p in plans] == ["fail", "run"]
    assert plans[0].note.startswith("ValueError: runs/w1/run.json is not valid JSON (Unterminated string")
    assert "repair or delete it" in plans[0].note
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "run.json"]  # untouched


# ---------------------------------------------------------------- two runners, one output folder

def fake_papermill(monkeypatch, execute):
    """papermill.execute_notebook replaced by `execute(notebook, output, parameters)`: no kernel."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda notebook, output, parameters, **kwargs: execute(notebook, output, parameters))


def test_a_run_another_runner_is_running_is_skipped_and_left_alone(project, capsys, monkeypatch):
    import os
    import socket
    import threading

    started, release, executed = threading.Event(), threading.Event(), []

    def execute(notebook, output, parameters):
        executed.append(parameters["out_dir"])
        started.set()
        if len(executed) == 1:  # the first runner's notebook runs until the test lets it finish
            release.wait(30)
        Path(output).write_text(Path(notebook).read_text())

    fake_papermill(monkeypatch, execute)
    study = write_study("s.yaml", "output: runs\nruns: [{notebook: light.ipynb, name: one}]\n")
    first = threading.Thread(target=run_study, args=(study,), kwargs={"show_output": False, "echo": lambda line: 0})
    first.start()
    try:
        assert started.wait(30)
        folder = project / "runs" / "one"
        (folder / "partial.txt").write_text("written by the first runner's notebook")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        second = run_study(study, show_output=False)
        after = {p.name: p.read_bytes() for p in folder.iterdir()}
    finally:
        release.set()
        first.join()
    assert executed == ["runs/one"] and after == before  # the second runner touched nothing
    assert second.locked == ["one"] and second.done == second.skipped == second.failed == []
    out = capsys.readouterr().out
    assert f"[1/1] one skipped: in use by pid {os.getpid()} on {socket.gethostname()} since " in out
    assert "done 0, skipped 0, locked 1 (in use by another runner), failed 0" in out
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"
    assert not list(project.rglob("*.lock"))  # the first runner's lock is gone with its run


def test_a_killed_runners_lock_is_taken_over_and_every_end_releases_it(project, capsys, monkeypatch):
    import signal

    study = write_study("s.yaml", "output: runs\nruns: [{notebook: light.ipynb, name: one}]\n")
    lock = project / "runs" / "one.lock"
    # a runner that took the run's lock, then was killed: its lock file stays behind
    holder = subprocess.Popen(
        [sys.executable, "-c", "import runpy, sys, time\n"
         "with runpy.run_path(sys.argv[1])['file_lock'](sys.argv[2]):\n"
         "    print('locked', flush=True)\n    time.sleep(60)",
         str(Path(__file__).resolve().parents[1] / "vitlib" / "fileio.py"), str(lock)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert f"pid {holder.pid} on " in lock.read_text()

    def execute(notebook, output, parameters):
        Path(output).write_text(Path(notebook).read_text())

    fake_papermill(monkeypatch, execute)
    assert run_study(study, show_output=False).done == ["one"]
    assert f"[1/1] one: its runner (pid {holder.pid} on " in capsys.readouterr().out
    assert not lock.exists()

    def fail(notebook, output, parameters):
        raise RuntimeError("kernel died")

    study = write_study("s.yaml", "output: runs\nruns: [{notebook: light.ipynb, name: two}]\n")
    fake_papermill(monkeypatch, fail)
    assert [name for name, _ in run_study(study, show_output=False).failed] == ["two"]
    assert not lock.with_name("two.lock").exists()

    def interrupt(notebook, output, parameters):
        raise KeyboardInterrupt

    study = write_study("s.yaml", "output: runs\nruns: [{notebook: light.ipynb, name: three}]\n")
    fake_papermill(monkeypatch, interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_study(study, show_output=False)
    assert json.loads((project / "runs/three/run.json").read_text())["status"] == "interrupted"
    assert not list(project.rglob("*.lock"))


def test_a_full_disk_stops_the_study_with_one_line(project, capsys, monkeypatch):
    import errno
    import os

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    (project / "s.yaml").write_text(HEADER + "output: runs\nruns: [{notebook: light.ipynb, name: one}]\n")
    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["run", "s.yaml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: no space left on device writing runs/one/run.json; "
                   "free some space, then run the same command again to continue\n")
    assert not list(project.rglob("*.lock")) and not list(project.rglob("*.tmp"))


# ---------------------------------------------------------------- overrides: --set and --output

@pytest.mark.parametrize("text, expected", [
    ("steps=3", ("steps", 3)), ("lr=1e-4", ("lr", 1e-4)), ("resume=true", ("resume", True)),
    ("model_args={depth: 1, pos_emb: none}", ("model_args", {"depth": 1, "pos_emb": "none"})),
    ("few_shot=[5, 10]", ("few_shot", [5, 10])), ("dataset=digits", ("dataset", "digits")),
    ("data_dir=", ("data_dir", "")), ('init="{runs}/a=b"', ("init", "{runs}/a=b")),
])
def test_parse_override_reads_the_value_as_yaml(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text, message", [
    ("steps", r"--set 'steps': expected key=value"),
    ("2x=1", r"--set '2x=1': expected key=value with a parameter name"),
    ("train_args={augment:{},warmup_steps:1}", r"'warmup_steps:1' reads as a key without a value.*space"),
    ("init={runs}/x", r"--set init: '\{runs\}/x' is not a YAML value .*quote"),
])
def test_parse_override_errors_say_how_to_write_it(text, message):
    with pytest.raises(ValueError, match=message):
        parse_override(text)


def test_output_and_overrides_move_every_path_and_keep_the_names():
    data = {"name": "s", "output": "results/runs/s", "defaults": {"mode": "a"},
            "runs": [{"notebook": "pre.ipynb", "name": "{model}-s{seed}",
                      "grid": {"model": ["vit"], "seed": [0, 1]}, "params": {"epochs": 30}},
                     {"notebook": "ft.ipynb", "name": "ft",
                      "params": {"init": "{runs}/vit-s1", "log": "{out}/log", "report": "{results}"}}]}
    plain = expand_study(data, "s.yaml")
    assert plain.runs[2].params["report"] == "results" and plain.output_given is False
    study = expand_study(data, "s.yaml", output="/tmp/smoke/runs/s",
                         overrides={"epochs": 1, "seed": 5, "note": "{study} at {runs}"})
    assert study.output == Path("/tmp/smoke/runs/s") and study.output_given
    assert [r.name for r in study.runs] == ["vit-s0", "vit-s1", "ft"]  # the study's own values
    first, ft = study.runs[0], study.runs[2]
    assert first.folder == Path("/tmp/smoke/runs/s/vit-s0")
    assert first.params == {"epochs": 30, "model": "vit", "seed": 0}  # overrides kept apart
    assert first.overrides == {"epochs": 1, "seed": 5, "note": "s at /tmp/smoke/runs/s"}
    assert ft.params == {"init": "/tmp/smoke/runs/s/vit-s1", "log": "/tmp/smoke/runs/s/ft/log",
                         "report": "/tmp/smoke"}
    assert study.overrides == {"epochs": 1, "seed": 5, "note": "{study} at {runs}"}  # as given
    with pytest.raises(ValueError, match=r"--set: 'out_dir' is reserved"):
        expand_study(data, "s.yaml", overrides={"out_dir": "x"})
    with pytest.raises(ValueError, match=r"\{results\} in '\{results\}' needs an output of the form "
                                         r"<results>/runs/<name>, got '/tmp/flat'"):
        expand_study(data, "s.yaml", output="/tmp/flat")


def test_overrides_go_only_where_declared_and_bad_ones_stop_the_study(project, capsys, monkeypatch):
    (project / "s.yaml").write_text(HEADER + """\
runs:
  - {notebook: work.ipynb, name: "w{x}", grid: {x: [1, 2]}, params: {mode: a}}
  - {notebook: resumable.ipynb, name: res}
""")
    study = load_study("s.yaml", output="smoke/runs/s", overrides={"x": 7, "mode": "b"})
    plans = plan_study(study)
    assert [p.params for p in plans] == [
        {"mode": "b", "x": 7, "out_dir": "smoke/runs/s/w1"},
        {"mode": "b", "x": 7, "out_dir": "smoke/runs/s/w2"},
        {"out_dir": "smoke/runs/s/res"}]  # resumable.ipynb declares neither x nor mode
    with pytest.raises(ValueError, match=r"--set 'xx' \(did you mean 'x'\?\): no notebook of s.yaml "
                                         r"declares it; they declare: mode, out_dir, resume, x"):
        plan_study(load_study("s.yaml", overrides={"xx": 1}))

    assert main(["run", "s.yaml", "--dry-run", "--output", "smoke/runs/s", "--set", "x=7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("output smoke/runs/s; --set x=7\n") and "would run 3, skip 0, fail 0" in out
    assert main(["run", "s.yaml", "--list", "--set", "x=7"]) == 0
    assert "--set (wins over the runs' values): x=7" in capsys.readouterr().out
    assert main(["run", "s.yaml", "--dry-run", "--set", "x"]) == 2
    assert "expected key=value" in capsys.readouterr().err
    assert main(["run", "s.yaml", "--dry-run", "--set", "nope=1"]) == 2
    assert "--set 'nope': no notebook of s.yaml declares it" in capsys.readouterr().err
    monkeypatch.setenv("VITLIB_PRECISION", "half")  # named before any run starts
    assert main(["run", "s.yaml", "--set", "x=7"]) == 2
    assert "$VITLIB_PRECISION='half' is not supported; allowed: auto, bf16, fp32" in capsys.readouterr().err
    assert not (project / "smoke").exists() and not (project / "results").exists()


def test_a_smoke_run_records_its_overrides_and_is_never_taken_for_a_real_run(project):
    make_notebook(project / "cmd.ipynb", 'x = 1\nout_dir = "out"',
                  "import json, os, pathlib\n"
                  "pathlib.Path(out_dir, 'result.json').write_text(json.dumps(\n"
                  "    {'x': x, 'command': os.environ['VITLIB_COMMAND']}))")
    (project / "s.yaml").write_text(HEADER + "output: runs/s\nruns: [{notebook: cmd.ipynb, name: one}]\n")
    smoke = load_study("s.yaml", overrides={"x": 9, "mode": "b c"})  # mode: no notebook declares it...
    with pytest.raises(ValueError, match="--set 'mode'"):
        run_study(smoke)
    smoke = load_study("s.yaml", overrides={"x": 9})
    assert run_study(smoke, show_output=False).done == ["one"]
    record = json.loads((project / "runs/s/one/run.json").read_text())
    assert record["parameters"] == {"x": 9, "out_dir": "runs/s/one"} and record["overrides"] == {"x": 9}
    result = json.loads((project / "runs/s/one/result.json").read_text())
    assert result == {"x": 9, "command": "python -m vitlib.experiments run s.yaml --set x=9 --only one"}
    assert run_study(smoke, show_output=False).skipped == ["one"]  # same overrides: finished
    with pytest.raises(ValueError, match=r"runs/s/one: finished with other parameters \(x: 9 -> '<unset>'\)"):
        run_study(load_study("s.yaml"))  # the real study refuses to take the smoke run as its own

    moved = load_study("s.yaml", output="/tmp/x y/runs/s",
                       overrides={"dataset": "digits", "model_args": {"depth": 1}, "note": "a: b", "n": None})
    assert command_line(moved, "one") == (
        "python -m vitlib.experiments run s.yaml --output '/tmp/x y/runs/s' --set dataset=digits "
        """--set 'model_args={"depth": 1}' --set 'note="a: b"' --set n=null --only one""")
    assert [parse_override(f"{k}={v}") for k, v in [("model_args", '{"depth": 1}'), ("note", '"a: b"')]] == [
        ("model_args", {"depth": 1}), ("note", "a: b")]  # the recorded command reads back


ENV_CELL = """\
import json, os, pathlib, time
time.sleep(1.0)  # both jobs in flight at once
pathlib.Path(out_dir, "result.json").write_text(json.dumps({
    "command": os.environ["VITLIB_COMMAND"], "threads": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid(),
    "start": time.time()}))
"""


def test_jobs_run_at_once_each_kernel_with_its_own_command_and_share_of_cores(project, monkeypatch):
    """--jobs 2 on a CPU: two kernels at a time, each told the command of its own run and half the
    cores (OMP_NUM_THREADS); the runner's own environment is left as it was."""
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the cores are shared out
    monkeypatch.delenv("VITLIB_COMMAND", raising=False)
    make_notebook(project / "env.ipynb", 'x = 1\nout_dir = "out"', ENV_CELL)
    (project / "s.yaml").write_text(HEADER + "output: runs/s\n"
                                    "runs: [{notebook: env.ipynb, name: 'r{x}', grid: {x: [1, 2]}}]\n")
    lines = []
    summary = run_study(load_study("s.yaml"), jobs=2, echo=lines.append)
    assert sorted(summary.done) == ["r1", "r2"] and not summary.failed
    results = {n: json.loads((project / f"runs/s/{n}/result.json").read_text()) for n in ("r1", "r2")}
    for name, result in results.items():
        assert result["command"].endswith(f"--only {name}") and result["threads"] == "2"
    assert results["r1"]["pid"] != results["r2"]["pid"]
    assert abs(results["r1"]["start"] - results["r2"]["start"]) < 1.0  # they overlapped
    assert "VITLIB_COMMAND" not in os.environ
    assert lines[0] == "2 runs at a time: OMP_NUM_THREADS=2; OMP_NUM_THREADS=2"
    assert sorted(run_study(load_study("s.yaml"), jobs=2, echo=lines.append).skipped) == ["r1", "r2"]


def test_schedule_starts_readers_after_their_inputs_and_collectors_after_every_run():
    """jobs=2: a fine-tuning starts after the run it reads and fails if that failed; a comparison
    and a report (their results_dir holds the run folders) start only once every run has settled,
    failed ones included, the report after the comparison."""
    from types import SimpleNamespace

    from vitlib.experiments.schedule import Summary, dependencies, schedule

    def plan(name, **params):
        return SimpleNamespace(run=SimpleNamespace(name=name, folder=Path("res/runs/s") / name),
                               params={"out_dir": f"res/runs/s/{name}", **params})

    plans = [plan("a"), plan("b"), plan("ft-a", init="res/runs/s/a"), plan("ft-b", init="res/runs/s/b/"),
             plan("compare", results_dir="res", study_name="s"), plan("report", results_dir="res/"),
             plan("c", note="")]
    reads, follows = dependencies(plans)
    assert reads == {"a": set(), "b": set(), "ft-a": {"a"}, "ft-b": {"b"}, "compare": set(), "report": set(),
                     "c": set()}
    assert follows["compare"] == {"a", "b", "ft-a", "ft-b", "c"} and follows["report"] == follows["compare"] | {
        "compare"} and not any(follows[n] for n in ("a", "b", "ft-a", "ft-b", "c"))

    class Handle:  # a run that has finished by the time the scheduler looks
        def __init__(self, name):
            self.name = name

        def done(self):
            return True

    summary, started, lines = Summary(), [], []

    def start(i, p):
        started.append((p.run.name, set(summary.done) | {n for n, _ in summary.failed}))
        return Handle(p.run.name)

    def finish(handle):
        (summary.failed.append((handle.name, "broken")) if handle.name == "b" else summary.done.append(handle.name))

    schedule(plans, 2, start, finish, summary, lines.append, wait=lambda handles: None)
    assert [name for name, _ in started] == ["a", "b", "ft-a", "c", "compare", "report"]
    settled_before = dict(started)
    assert settled_before["compare"] == {"a", "b", "ft-a", "ft-b", "c"}
    assert settled_before["report"] == settled_before["compare"] | {"compare"}
    assert ("ft-b", "its input run b did not complete") in summary.failed
    assert lines == ["[4/7] ft-b failed: its input run b did not complete"]


def test_a_kernel_that_dies_before_answering_is_started_again(monkeypatch, tmp_path):
    """Kernels started side by side can race for a port and die before they answer: no cell has
    run, so the notebook is started again (up to KERNEL_STARTS times); any other error propagates."""
    import papermill

    from vitlib.experiments import kernel

    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) < 2:
            raise RuntimeError(kernel.KERNEL_DIED_AT_START)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    assert kernel.execute_notebook("a.ipynb", tmp_path / "b.ipynb", {}, "python3") == tmp_path / "b.ipynb"
    assert len(calls) == 2

    def dead(*args, **kwargs):
        calls.append(args)
        raise RuntimeError(kernel.KERNEL_DIED_AT_START)

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", dead)
    with pytest.raises(RuntimeError, match="Kernel died before"):
        kernel.execute_notebook("a.ipynb", tmp_path / "b.ipynb", {}, "python3")
    assert len(calls) == kernel.KERNEL_STARTS

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("Kernel didn't respond in 60 seconds")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", broken)
    with pytest.raises(RuntimeError, match="didn't respond"):
        kernel.execute_notebook("a.ipynb", tmp_path / "b.ipynb", {}, "python3")
    assert len(calls) == 1


def test_job_environments_give_each_slot_a_gpu(monkeypatch):
    from vitlib.experiments.runner import job_environments
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert job_environments(3) == [{"CUDA_VISIBLE_DEVICES": g} for g in ("3", "5", "3")]
    assert job_environments(1) == [{}]


def test_submitit_local_executor_runs_each_run_as_a_job_with_the_same_rules(project):
    """Each run a submitit job (its local executor: processes on this machine): the jobs' summaries
    merge into one, a finished run is skipped by the next submission, a failing notebook is a
    failed run, not a failed job."""
    pytest.importorskip("submitit")
    make_notebook(project / "bad.ipynb", 'out_dir = "out"', "raise RuntimeError('broken on purpose')")
    (project / "s.yaml").write_text(HEADER + "output: runs/s\nruns:\n"
                                    "  - {notebook: light.ipynb, name: 'w{x}', grid: {x: [1, 2]}}\n"
                                    "  - {notebook: bad.ipynb, name: bad}\n")
    lines = []
    local_jobs = functools.partial(run_on_executor, executor="local")
    summary = run_study(load_study("s.yaml"), jobs=2, submit=local_jobs, echo=lines.append)
    assert sorted(summary.done) == ["w1", "w2"]
    assert [name for name, _ in summary.failed] == ["bad"] and "broken on purpose" in summary.failed[0][1]
    assert sum("submitted as local job" in line for line in lines) == 3
    assert json.loads((project / "runs/s/w2/result.json").read_text())["x"] == 2
    assert json.loads((project / "runs/s/w1/run.json").read_text())["status"] == "complete"
    again = run_study(load_study("s.yaml"), only=["w*"], submit=local_jobs, echo=lines.append)
    assert sorted(again.skipped) == ["w1", "w2"] and not again.done
    assert main(["run", "s.yaml", "--executor-arg", "timeout_min=5"]) == 2  # needs --executor
