"""The benchmarks run end to end at tiny sizes on the CPU; no timing is asserted (timings belong in
bench/, never in an assertion): they must finish, print their table last and write the CSV."""
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ is a folder of scripts beside the package, not installed with it

from bench import (  # noqa: E402
    attention_kernels,
    common,
    compare_commits,
    fit_vs_step,
    profile_step,
    sequence_length,
    throughput,
)
from vitlib.device import resolve_precision  # noqa: E402


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def last_table(stdout, n_rows):
    """The header and rows of the table that ends the output."""
    lines = stdout.rstrip().splitlines()
    header, rule, rows = lines[-n_rows - 2], lines[-n_rows - 1], lines[-n_rows:]
    assert set(rule) <= {"-", " "} and "-" in rule, rule
    return header.split(), [line.split() for line in rows]


def test_throughput_tiny_cpu(tmp_path, capsys):
    pytest.importorskip("timm")
    out = tmp_path / "throughput.csv"
    # the eager backend traces vitlib-best's whole step (forward, backward, opt.step) with dynamo
    # without paying for kernel generation on the CPU
    rows = throughput.main(["--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--out", str(out),
                            "--backend", "eager"])
    assert [(r["impl"], r["compile"]) for r in rows] == [
        ("vitlib", "none"), ("timm", "none"), ("vitlib-best", "max-autotune-no-cudagraphs")]
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert "scope=step" in rows[2]["settings"] and "tf32=on" in rows[2]["settings"]

    header, table = last_table(capsys.readouterr().out, len(rows))
    assert header == list(throughput.COLUMNS)
    assert [line[:3] for line in table] == [["tiny", r["impl"], r["compile"]] for r in rows]

    columns, data = read_csv(out)
    assert columns == [*throughput.COLUMNS, *common.ENV_COLUMNS]
    assert len(data) == 3
    for row in data:
        images_per_s, step_ms = float(row["images_per_s"]), float(row["step_ms"])
        assert images_per_s > 0 and step_ms == pytest.approx(1000 * 8 / images_per_s, rel=2e-3)
        assert float(row["compile_s"]) >= 0
        assert (row["mfu"], row["peak_mem_gib"], row["torch"]) == ("n/a", "n/a", torch.__version__)
        assert row["gpu"].startswith("cpu (") and float(row["gflops_per_s"]) > 0
        assert row["precision"] == resolve_precision("cpu")  # "auto": bf16 where the CPU has it natively
        assert row["batch"] == "8" and row["date"].endswith("Z") and row["commit"]
    timm_speed = float(data[1]["images_per_s"])
    assert data[1]["speed_vs_timm"] == "1" and data[1]["vs_timm_paired"] == "1"
    assert float(data[0]["vs_timm_min"]) <= float(data[0]["vs_timm_paired"]) <= float(data[0]["vs_timm_max"])
    assert float(data[0]["speed_vs_timm"]) == pytest.approx(float(data[0]["images_per_s"]) / timm_speed, rel=2e-3)


def test_throughput_cpu_rows_name_each_attention_kernel_and_the_allocator(tmp_path):
    pytest.importorskip("timm")
    rows = throughput.main(["--tiny", "--device", "cpu", "--impls", "vitlib,vitlib-sdpa,vitlib-explicit,timm",
                            "--precision", "fp32", "--steps", "1", "--warmup", "1", "--out", str(tmp_path / "t.csv")])
    assert [r["impl"] for r in rows] == ["vitlib", "vitlib-sdpa", "vitlib-explicit", "timm"]
    assert all(r["status"] == "ok" and r["settings"].endswith("malloc=keep") for r in rows)
    assert [throughput.build_model(impl, "tiny").blocks[0].attn.kernel for impl in ("vitlib", "vitlib-sdpa",
                                                                                   "vitlib-explicit")] == [
        "auto", "sdpa", "explicit"]


def test_attention_kernels_tiny_cpu(tmp_path, capsys):
    out = tmp_path / "kernels.csv"
    rows = attention_kernels.main(["--tiny", "--device", "cpu", "--steps", "1", "--rounds", "2", "--out", str(out)])
    precisions = ["fp32", "bf16"] if resolve_precision("cpu") == "bf16" else ["fp32"]
    assert [(r["tokens"], r["precision"], r["pass"]) for r in rows] == [
        (t, p, pass_) for t in (5, 17) for p in precisions for pass_ in ("train", "infer")]
    for row in rows:
        assert row["sdpa_ms"] > 0 and row["explicit_ms"] > 0
        assert row["explicit_speedup"] == pytest.approx(row["sdpa_ms"] / row["explicit_ms"])
        assert row["fastest"] == ("explicit" if row["explicit_ms"] < row["sdpa_ms"] else "sdpa")
        # the measured rule at these few tokens: explicit for bf16 training, and for bf16 inference
        # on the AVX512-BF16 kind only
        explicit = row["precision"] == "bf16" and (row["pass"] == "train" or row["cpu_kind"] == "avx512-bf16")
        assert row["auto"] == ("explicit" if explicit else "sdpa")
    columns, data = read_csv(out)
    assert columns == [*attention_kernels.COLUMNS, *common.ENV_COLUMNS] and len(data) == len(rows)
    assert last_table(capsys.readouterr().out, len(rows))[0] == list(attention_kernels.COLUMNS)


@pytest.mark.parametrize("config", ["r10n_32", "ti4_d6_32"])
def test_timm_rival_has_the_same_shape(config):
    """The timm model a CPU row compares with has vitlib's parameter count and output shape (the
    ResNet: timm's ResNet given the CIFAR 3x3 stem, no max-pool, the same widths)."""
    pytest.importorskip("timm")
    ours, theirs = throughput.build_model("vitlib", config), throughput.build_model("timm", config)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert theirs(torch.zeros(2, 3, 32, 32)).shape == ours(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_median_round_and_its_spread():
    rounds = [dict(impl="vitlib", images_per_s=v, step_ms=1000 / v, status="ok") for v in (90.0, 110.0, 100.0)]
    row = throughput.median_round(rounds + [dict(impl="vitlib", images_per_s="", status="error: x")])
    assert row["images_per_s"] == 100.0 and row["step_ms"] == 10.0 and row["spread"] == pytest.approx(0.2)
    assert throughput.median_round([dict(status="OOM")])["status"] == "OOM"


def test_speed_vs_timm_pairs_compile_modes_and_best_takes_fastest_timm():
    rows = [dict(config="c", impl=impl, compile=mode, images_per_s=speed, status="ok")
            for impl, mode, speed in [("vitlib", "none", 90.0), ("timm", "none", 100.0),
                                      ("vitlib", "default", 150.0), ("timm", "default", 120.0),
                                      ("vitlib-best", "max-autotune", 180.0)]]
    rows.append(dict(config="c", impl="vitlib", compile="max-autotune", images_per_s="OOM", status="OOM"))
    throughput.add_speed_vs_timm(rows)
    assert [r["speed_vs_timm"] for r in rows] == pytest.approx([0.9, 1.0, 1.25, 1.0, 1.5, ""])


def test_paired_vs_timm_is_the_median_of_each_rounds_own_ratio():
    def round_of(vitlib, timm):
        return [dict(config="c", impl=impl, compile="none", images_per_s=speed, status="ok" if speed else "OOM")
                for impl, speed in (("vitlib", vitlib), ("timm", timm))]
    # the machine drifts: ratios of the rounds 2.0, 1.5, 1.8 (a failed timm row pairs nothing)
    rounds = [round_of(200.0, 100.0), round_of(300.0, 200.0), round_of(90.0, 50.0), round_of(80.0, "")]
    vitlib, timm = throughput.paired_vs_timm(rounds)
    assert (vitlib["vs_timm_paired"], vitlib["vs_timm_min"], vitlib["vs_timm_max"]) == pytest.approx((1.8, 1.5, 2.0))
    assert timm["vs_timm_paired"] == 1.0
    assert throughput.paired_vs_timm([round_of(200.0, "")]) == [{}, {}]


@pytest.mark.parametrize("flag, value, message", [
    ("--compile", "fast", "--compile='fast'"), ("--configs", "b16", "--configs='b16'"),
    ("--impls", "vitlib,jax", "--impls='vitlib,jax'"), ("--best-scope", "all", "--best-scope"),
    ("--steps", "0", "--steps must be positive"), ("--device", "tpu", "device='tpu'")])
def test_throughput_rejects_bad_flags_before_any_work(flag, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        throughput.parse_args([flag, value])


def test_sequence_length_tiny_cpu(tmp_path, capsys):
    out, figure = tmp_path / "sequence_length.csv", tmp_path / "sequence_length.png"
    rows, fits = sequence_length.main(["--tiny", "--depth", "1", "--device", "cpu", "--steps", "1", "--warmup", "1",
                                       "--out", str(out), "--figure", str(figure)])
    assert [(r["attn_impl"], r["tokens"]) for r in rows] == [
        (impl, n) for impl in ("sdpa", "explicit") for n in (4, 16, 64, 256)]
    assert all(r["status"] == "ok" and r["time_ms"] > 0 and r["peak_mem_gib"] == "n/a" for r in rows)
    assert rows[-1]["fwd_gflops"] > rows[0]["fwd_gflops"]  # more tokens, more work

    header, table = last_table(capsys.readouterr().out, len(fits))
    assert header == list(sequence_length.FIT_COLUMNS)
    assert [line[0] for line in table] == ["sdpa", "explicit"]
    assert all(f["points"] == 4 and all(math.isfinite(f[k]) for k in ("a_ms_per_token2", "b_ms_per_token", "c_ms"))
               for f in fits)

    columns, data = read_csv(out)
    fit_columns = [f"fit_{k}" for k in sequence_length.FIT_COLUMNS[2:]]
    assert columns == [*sequence_length.COLUMNS, *fit_columns, *common.ENV_COLUMNS]
    assert len(data) == 8 and {row["depth"] for row in data} == {"1"}
    assert all(row["gpu"].startswith("cpu (") for row in data)  # the CPU named, as bench.common.environment does
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quadratic_fit_recovers_an_exact_parabola_and_skips_oom():
    rows = [dict(tokens=n, time_ms=2e-3 * n ** 2 + 0.5 * n + 3.0, status="ok") for n in (16, 64, 256, 1024)]
    rows.append(dict(tokens=4096, time_ms="OOM", status="OOM"))
    fit = sequence_length.quadratic_fit(rows)
    assert fit["points"] == 4 and fit["r2"] == pytest.approx(1.0)
    assert (fit["a_ms_per_token2"], fit["b_ms_per_token"], fit["c_ms"]) == pytest.approx((2e-3, 0.5, 3.0), rel=1e-6)
    assert math.isnan(sequence_length.quadratic_fit(rows[:2])["r2"])  # two token counts cannot fix a parabola


def test_sequence_length_records_out_of_memory(monkeypatch, tmp_path):
    def out_of_memory(**kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
    monkeypatch.setattr(sequence_length, "VisionTransformer", out_of_memory)
    args = sequence_length.parse_args(["--tiny", "--device", "cpu"])
    row = sequence_length.measure("explicit", 16, 1, sequence_length.TINY_SHAPE, args)
    assert (row["status"], row["time_ms"], row["peak_mem_gib"], row["tokens"]) == ("OOM", "OOM", "OOM", 256)


def test_write_csv_and_table_formatting(tmp_path, capsys):
    env = dict(gpu="cpu", torch="x", commit="abc", date="d")
    path = common.write_csv([dict(a=1.234567, b="OOM")], tmp_path / "sub" / "t.csv", ("a", "b"), env)
    assert read_csv(path) == (["a", "b", "gpu", "torch", "commit", "date"],
                              [dict(a="1.235", b="OOM", gpu="cpu", torch="x", commit="abc", date="d")])
    common.print_table([dict(a=1.0, b="n/a")], ("a", "b"))
    assert capsys.readouterr().out.splitlines() == ["a    b", "-  ---", "1  n/a"]


def test_profile_step_tiny_cpu(tmp_path, capsys):
    out = tmp_path / "profile.csv"
    rows = profile_step.main(["--tiny", "--steps", "2", "--warmup", "1", "--top", "30", "--precision", "fp32",
                              "--out", str(out)])
    header, table = last_table(capsys.readouterr().out, len(rows))
    assert header == ["op", "calls_per_step", "ms_per_step", "share", "gflops_per_s", "matmul_fraction"]
    columns, written = read_csv(out)
    assert columns == [*profile_step.COLUMNS, *common.ENV_COLUMNS] and len(written) == len(rows) == 31
    assert rows[-1]["op"] == "other" and sum(r["share"] for r in rows) == pytest.approx(1.0)
    by_op = {r["op"]: r for r in rows}
    # the tiny ViT's linear layers: forward addmm, backward mm, each with the FLOPs of its shapes
    assert by_op["aten::addmm"]["gflops_per_s"] > 0 and by_op["aten::mm"]["gflops_per_s"] > 0
    assert by_op["aten::addmm"]["matmul_fraction"] == pytest.approx(
        by_op["aten::addmm"]["gflops_per_s"] / rows[0]["matmul_rate_gflops"])
    assert all(r["step_ms"] > 0 and r["precision"] == "fp32" for r in rows)
    columns, copies = read_csv(tmp_path / "profile_copies.csv")  # aten::copy_, by the operator it ran in
    assert columns == [*profile_step.COPY_COLUMNS, *common.ENV_COLUMNS]
    assert sum(float(r["share_of_copies"]) for r in copies) == pytest.approx(1.0, abs=1e-3)
    assert sum(float(r["ms_per_step"]) for r in copies) == pytest.approx(by_op["aten::copy_"]["ms_per_step"], rel=1e-3)
    # the linear layers' bias, broadcast into the output before the product adds to it: (8 x 17 tokens, 3 x 64)
    assert any(r["within"] == "aten::addmm" and r["shape"] == "136x192" for r in copies)
    assert not any(r["within"] in profile_step.WRAPPERS for r in copies)


def test_profile_step_counts_matrix_product_flops_from_shapes():
    assert profile_step.matmul_flops("aten::mm", [[8, 3], [3, 5]]) == 2 * 8 * 3 * 5
    assert profile_step.matmul_flops("aten::addmm", [[5], [8, 3], [3, 5], [], []]) == 2 * 8 * 3 * 5
    assert profile_step.matmul_flops("aten::bmm", [[4, 8, 3], [4, 3, 5]]) == 2 * 4 * 8 * 3 * 5
    assert profile_step.matmul_flops("aten::baddbmm", [[4, 8, 5], [4, 8, 3], [4, 3, 5], [], []]) == 2 * 4 * 8 * 3 * 5
    assert profile_step.matmul_flops("aten::gelu", [[8, 3], []]) == 0
    assert profile_step.matmul_flops("aten::mm", [[], []]) == 0  # shapes not recorded


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda"], "--device='cuda': this profile reads CPU operator times"),
    (["--config", "vit_huge"], "--config='vit_huge' is not supported; allowed: "),
    (["--impl", "vitlib-best"], "--impl='vitlib-best' is not supported"),
    (["--steps", "0"], "--steps must be positive"),
])
def test_profile_step_refuses_bad_arguments(argv, message):
    with pytest.raises(ValueError, match=message):
        profile_step.parse_args(argv)


def worktrees():
    return subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the repository's git history")
def test_compare_commits_tiny_cpu(tmp_path, capsys):
    before = worktrees()
    out = tmp_path / "compare.csv"
    rows = compare_commits.main(["--base", "HEAD", "--head", "HEAD", "--rounds", "2", "--isa", "avx2",
                                 "--out", str(out), "--", "--tiny", "--device", "cpu", "--impls", "vitlib",
                                 "--precision", "auto", "--steps", "1", "--warmup", "1"])
    header, table = last_table(capsys.readouterr().out, 1)
    assert header[:2] == ["config", "impl"] and table[0][:2] == ["tiny", "vitlib"]
    columns, written = read_csv(out)
    assert columns == [*compare_commits.COLUMNS, *common.ENV_COLUMNS] and len(written) == len(rows) == 1
    row = written[0]
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert row["base_commit"] == row["head_commit"] == head.stdout.strip() and row["rounds"] == "2"
    assert float(row["head_vs_base"]) > 0 and float(row["base_images_per_s"]) > 0
    # limited to AVX2, oneDNN has no native bf16: "auto" is fp32, as on an AVX2 CPU
    assert row["precision"] == "fp32" and row["isa"] == "avx2"
    assert "AVX2" in row["head_device"] and "native bf16: no" in row["head_device"]
    assert worktrees() == before  # the temporary checkouts are gone


def test_a_failed_child_run_ends_the_script_with_its_stderr_not_a_traceback(tmp_path):
    def main():
        compare_commits.run_child([sys.executable, "-c", "import sys; sys.exit('boom: no such dataset')"],
                                  tmp_path, "native", "vitlib train")
    with pytest.raises(SystemExit) as exit:
        common.run_cli(main)
    assert str(exit.value) == f"error: vitlib train failed in {tmp_path} (exit 1):\nboom: no such dataset"


def test_compare_commits_combines_rounds_by_median():
    def rounds(*speeds, config="a", status="ok", first=0):
        return {first + i: [dict(config=config, impl="vitlib", images_per_s=str(s), status=status, gpu="cpu (X)")]
                for i, s in enumerate(speeds)}
    got, left_out = compare_commits.combine({"base": {**rounds(100, 120, 80), **rounds(5, config="only-base", first=3)},
                                   "head": {**rounds(150, 90, 110), **rounds(7, status="OOM", first=3)}},
                                  "native", {"base": "1" * 40, "head": "2" * 40})
    assert len(got) == 1  # a config only one commit measured, and failed rows, are left out
    assert left_out == [("only-base", "vitlib", "", "", "", "", "")]
    row = got[0]
    assert (row["base_images_per_s"], row["head_images_per_s"]) == (100, 110)
    assert (row["base_spread"], row["head_spread"]) == pytest.approx((0.4, 60 / 110))
    # within each round: 1.5, 0.75, 1.375
    assert (row["head_vs_base"], row["ratio_min"], row["ratio_max"]) == pytest.approx((1.375, 0.75, 1.5))
    assert (row["rounds"], row["base_commit"], row["head_commit"]) == (3, "1111111", "2222222")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the repository's git history")
def test_compare_commits_train_runs_in_turn_and_numbers_on(tmp_path, capsys):
    runs = tmp_path / "runs"
    train = ["--", "--model", "vit_ti4", "--dataset", "digits", "--steps", "2", "--batch-size", "32",
             "--model-arg", "depth=1", "--no-progress"]
    rows = compare_commits.main(["--base", "HEAD", "--rounds", "1", "--train", "--runs-dir", str(runs),
                                 "--out", str(tmp_path / "a.csv"), *train])
    assert sorted(f.name for f in runs.iterdir()) == ["1-base", "2-head"] and rows[0]["rounds"] == 1
    (runs / "3-head").mkdir()  # an interrupted round: left alone, the next round starts at 5
    rows = compare_commits.main(["--base", "HEAD", "--rounds", "1", "--train", "--runs-dir", str(runs),
                                 "--out", str(tmp_path / "b.csv"), *train])
    assert sorted(f.name for f in runs.iterdir()) == ["1-base", "2-head", "3-head", "5-base", "6-head"]
    assert rows[0]["rounds"] == 2 and rows[0]["config"] == "fit vit_ti4 16px" and rows[0]["head_vs_base"] > 0
    with pytest.raises(ValueError, match="holds runs of other commits"):
        compare_commits.parse_args(["--base", "HEAD~1", "--train", "--runs-dir", str(runs)])


def write_fit_run(folder, commit, images_per_s, cpu="AMD EPYC, 2 cores, AVX2, 2 threads, native bf16: no",
                  status="complete"):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(dict(status=status, images_per_s=images_per_s, precision="fp32")))
    (folder / "env.json").write_text(json.dumps(dict(git_commit=commit, cpu=cpu, memory_format="contiguous")))
    (folder / "config.json").write_text(json.dumps(dict(model=dict(name="vit_ti4", img_size=16),
                                                        train=dict(batch_size=128, compile=False))))


def test_compare_commits_tables_train_runs_from_their_folders(tmp_path, capsys):
    runs = tmp_path / "runs"
    # rounds: (1-base, 2-head), (3-head, 4-base); 5-base has no partner yet, 6-head did not finish
    for name, speed in (("1-base", 900), ("2-head", 990), ("3-head", 800), ("4-base", 1000), ("5-base", 10)):
        write_fit_run(runs / name, ("a" if name.endswith("base") else "b") * 40, speed)
    write_fit_run(runs / "6-head", "b" * 40, 5, status="interrupted")
    (runs / "notes").mkdir()  # not a run folder
    out = tmp_path / "fit.csv"
    rows = compare_commits.main(["--from-runs", str(runs), "--isa", "avx2", "--out", str(out)])
    assert len(rows) == 1 and len(read_csv(out)[1]) == 1
    row = rows[0]
    assert (row["config"], row["precision"], row["batch"], row["rounds"]) == ("fit vit_ti4 16px", "fp32", 128, 2)
    assert (row["base_commit"], row["head_commit"]) == ("aaaaaaa", "bbbbbbb")
    assert (row["head_vs_base"], row["ratio_min"], row["ratio_max"]) == pytest.approx((0.95, 0.8, 1.1))
    assert "bbbbbbb against aaaaaaa" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a CPU limited to AVX2"):  # runs made without the limits
        write_fit_run(runs / "7-head", "b" * 40, 900, cpu="AMD EPYC, 2 cores, AVX512, 2 threads, native bf16: yes")
        compare_commits.main(["--from-runs", str(runs), "--isa", "avx2", "--out", str(out)])
    write_fit_run(runs / "8-base", "c" * 40, 900)
    with pytest.raises(ValueError, match="the base runs come from 2 commits"):
        compare_commits.main(["--from-runs", str(runs), "--out", str(out)])


@pytest.mark.parametrize("argv, message", [
    (["--base", "HEAD", "--isa", "sse"], "--isa='sse' is not supported; allowed: native, avx2"),
    (["--base", "HEAD", "--train"], "--train and --runs-dir go together"),
    (["--isa", "avx2"], "--base is required"),
    (["--from-runs", "/no/such/folder"], "--from-runs='/no/such/folder' is not a folder"),
    (["--from-runs", str(REPO / "bench")], "holds no finished runs of both sides"),
    (["--base", "HEAD", "--train", "--runs-dir", "x", "--", "--out", "y"], "--out after '--'"),
    (["--base", "HEAD", "--rounds", "0"], "--rounds must be positive"),
    (["--base", "HEAD", "--", "--out", "x.csv"], "--out after '--'"),
    (["--base", "no-such-commit-xyz"], "--base='no-such-commit-xyz' is not a commit"),
])
def test_compare_commits_refuses_bad_arguments_before_any_work(argv, message):
    before = worktrees()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_commits.parse_args(argv)
    assert worktrees() == before


def test_fit_vs_step_tiny_cpu(tmp_path, capsys):
    pytest.importorskip("timm")
    runs, out = tmp_path / "runs", tmp_path / "fit.csv"
    argv = ["--config", "tiny", "--rounds", "1", "--steps", "1", "--warmup", "1", "--runs-dir", str(runs),
            "--out", str(out), "--", "--dataset", "digits", "--steps", "2", "--no-progress"]
    fit_vs_step.main(argv)
    (runs / "2-step.csv").write_text("")  # an interrupted round: left alone, the next one is round 3
    rows = fit_vs_step.main(argv)
    assert sorted(f.name for f in runs.iterdir()) == ["1-fit", "1-step.csv", "2-step.csv", "3-fit", "3-step.csv"]
    assert [row["round"] for row in rows] == [1, 3, "median"]
    assert {row["config"] for row in rows} == {"tiny"} and rows[0]["precision"] == resolve_precision("cpu")
    config = json.loads((runs / "1-fit" / "config.json").read_text())
    assert (config["model"]["depth"], config["model"]["embed_dim"], config["train"]["batch_size"]) == (2, 64, 8)
    for row in rows[:2]:
        assert row["fit_vs_timm_step"] == pytest.approx(row["fit_images_per_s"] / row["timm_step_images_per_s"])
    header, table_rows = last_table(capsys.readouterr().out, 3)
    assert header[:3] == ["round", "order", "config"] and table_rows[-1][0] == "median"
    again = fit_vs_step.main(["--from-runs", str(runs), "--out", str(tmp_path / "again.csv")])
    assert [r["fit_images_per_s"] for r in again] == [r["fit_images_per_s"] for r in rows]


def write_step_csv(path, vitlib, timm, precision="fp32"):
    rows = [dict(config="ti4_d128_16", impl=impl, precision=precision, images_per_s=speed, status="ok")
            for impl, speed in (("vitlib", vitlib), ("timm", timm))]
    common.write_csv(rows, path, ("config", "impl", "precision", "images_per_s", "status"), common.environment("cpu"))


def test_fit_vs_step_pairs_each_round_and_takes_the_median_of_ratios(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for r, (fit, vitlib, timm) in enumerate([(900, 1000, 500), (1100, 1000, 500), (1200, 1300, 500)], start=1):
        write_step_csv(runs / f"{r}-step.csv", vitlib, timm)
        write_fit_run(runs / f"{r}-fit", "a" * 40, fit)
    write_step_csv(runs / "4-step.csv", 1, 1)  # its fit run never finished
    write_fit_run(runs / "4-fit", "a" * 40, 5, status="interrupted")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    rows = fit_vs_step.main(["--from-runs", str(runs)])  # named by the CPU kind of the runs' env.json
    assert read_csv(tmp_path / "results" / "bench" / "cpu_fit_vs_step_avx2_ti4_d128_16.csv")[1][3]["round"] == "median"
    assert [row["round"] for row in rows] == [1, 2, 3, "median"]
    assert [row["order"] for row in rows[:3]] == ["step, fit", "fit, step", "step, fit"]
    median = rows[-1]
    assert (median["fit_vs_timm_step"], median["fit_vs_timm_min"], median["fit_vs_timm_max"]) == \
        pytest.approx((2.2, 1.8, 2.4))
    assert median["fit_vs_vitlib_step"] == pytest.approx(12 / 13)  # the rounds: 0.9, 1.1, 12/13
    assert median["fit_images_per_s"] == 1100 and median["fit_commit"] == "aaaaaaa"
    write_step_csv(runs / "5-step.csv", 1000, 500, precision="bf16")  # the fit runs' summary says fp32
    write_fit_run(runs / "5-fit", "a" * 40, 900)
    with pytest.raises(ValueError, match="round 5's step ran in bf16, its fit run in fp32"):
        fit_vs_step.main(["--from-runs", str(runs), "--out", str(tmp_path / "t.csv")])


@pytest.mark.parametrize("argv, message", [
    (["--config", "r10n_32", "--runs-dir", "x", "--", "--epochs", "1"], "--config='r10n_32' is not a ViT config"),
    (["--config", "ti4_d128_16", "--", "--epochs", "1"], "--runs-dir is required"),
    (["--runs-dir", "x", "--", "--epochs", "1", "--model", "vit_s4"], "--model after '--'"),
    (["--runs-dir", "x", "--", "--epochs", "1", "--precision=fp32"], "--precision=fp32 after '--'"),
    (["--runs-dir", "x", "--", "--dataset", "cifar10"], "say how long each fit run trains"),
    (["--runs-dir", "x", "--rounds", "0", "--", "--epochs", "1"], "--rounds must be positive"),
    (["--runs-dir", "x", "--isa", "sse", "--", "--epochs", "1"], "--isa='sse' is not supported"),
    (["--from-runs", "/no/such/folder"], "--from-runs='/no/such/folder' is not a folder"),
    (["--from-runs", str(REPO / "bench")], "holds no finished round"),
])
def test_fit_vs_step_refuses_bad_arguments_before_any_work(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_vs_step.parse_args(argv)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")], check=True)
