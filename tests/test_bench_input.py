"""bench/input_pipeline.py runs both modes end to end at a tiny size on the CPU and writes its CSVs.
No timed assertions: CPU numbers say nothing about GPU speed."""
import csv
import decimal
import importlib.util
from pathlib import Path

import pytest

from vitlib.device import resolve_precision
from vitlib.train import get_recipe

BENCH = Path(__file__).resolve().parents[1] / "bench" / "input_pipeline.py"
ENV = ["gpu", "torch", "commit", "date"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("input_pipeline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLIB_CACHE", str(tmp_path / "cache"))


def half_unit(text):
    """Half a unit in the last digit of a number as the CSV prints it: its largest rounding error."""
    return 0.5 * 10.0 ** decimal.Decimal(text).as_tuple().exponent


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_batch_stream_tiny(bench, tmp_path, capsys):
    out = tmp_path / "bench.csv"
    bench.main(["--tiny", "--device", "cpu", "--batches", "5", "--workers", "1", "--out", str(out)])
    rows = read(out)
    assert list(rows[0]) == [*bench.STREAM_COLUMNS, *ENV]
    assert [(r["pipeline"], r["augment"]) for r in rows] == [
        ("BatchStream", "pad_crop+flip"), ("DataLoader+torchvision", "pad_crop+flip"),
        ("BatchStream", "randaugment+mixup"), ("DataLoader+torchvision", "randaugment+mixup")]
    for row in rows:
        assert float(row["images_per_s"]) > 0 and row["gpu"].startswith("cpu (") and row["torch"] and row["commit"]
        assert row["batches"] == "5" and row["dataset"] == "fake" and row["batch_size"] == "16"
    assert [r["workers"] for r in rows] == ["0", "1", "0", "1"]
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-6].split() == ["pipeline", "augment", "workers", "images_per_s"]
    assert printed[-1].split()[:2] == ["DataLoader+torchvision", "randaugment+mixup"]


def test_end_to_end_modes_follow_the_recipe(bench):
    configs = bench.e2e_augments(get_recipe("vit_small_data"))
    recipe = get_recipe("vit_small_data").augment_config()
    assert list(configs) == ["synthetic", "recipe", "pad_crop+flip"] and configs["synthetic"] is None
    assert configs["recipe"] == recipe and recipe.randaugment_ops and recipe.mixes
    light = configs["pad_crop+flip"]
    assert (light.crop, light.padding, light.padding_mode, light.flip) == (
        recipe.crop, recipe.padding, recipe.padding_mode, recipe.flip)
    assert light.randaugment_ops == 0 and not light.mixes


def test_end_to_end_tiny(bench, tmp_path, capsys):
    out = tmp_path / "e2e.csv"
    bench.main(["--end-to-end", "--tiny", "--device", "cpu", "--model-arg", "depth=1", "--out", str(out)])
    rows = read(out)
    assert list(rows[0]) == [*bench.E2E_COLUMNS, *ENV]
    assert [r["mode"] for r in rows] == ["synthetic", "recipe", "pad_crop+flip"]
    assert "randaugment 2x9" in rows[1]["augment"] and "mixup" in rows[1]["augment"]
    assert "randaugment" not in rows[2]["augment"] and "flip" in rows[2]["augment"]
    assert all("," not in r["augment"] for r in rows)  # gpu_check.sh cuts the CSV at commas
    for row in rows:  # --tiny's sizes, --model-arg over the tiny model's fields
        assert (row["dataset"], row["batch_size"], row["steps"], row["rounds"]) == ("fake", "16", "3", "2")
        assert row["model"] == "vit_ti4 depth=1 embed_dim=64 num_heads=2 mlp_dim=128"
        assert (row["compile"], row["precision"]) == ("none", resolve_precision("cpu"))
        assert row["gpu"].startswith("cpu (")
        assert float(row["step_ms"]) > 0 and float(row["step_ms_spread"]) >= 0
        assert float(row["images_per_s"]) == pytest.approx(16_000 / float(row["step_ms"]), rel=0.01, abs=1)
        assert 0 < float(row["loss"]) < 10  # finite: the step really trained
    assert float(rows[0]["overhead_pct"]) == 0
    base = rows[0]["step_ms"]
    for row in rows[1:]:  # the overhead is the ratio of the step times, up to the CSV's rounding of each
        ratio = float(row["step_ms"]) / float(base)
        rounding = 100 * ratio * (half_unit(row["step_ms"]) / float(row["step_ms"]) + half_unit(base) / float(base))
        assert float(row["overhead_pct"]) == pytest.approx(100 * (ratio - 1),
                                                           abs=rounding + half_unit(row["overhead_pct"]))
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-6].startswith("End to end: vit_ti4") and "GPU target" not in printed[-6]  # a CPU run
    assert printed[-5].split()[:2] == ["mode", "augment"] and printed[-5].split()[-1] == "loss"
    assert printed[-1].split()[0] == "pad_crop+flip"


@pytest.mark.parametrize("flags, message", [
    (["--batches", "0"], "--batches"), (["--rounds", "0"], "--rounds"), (["--warmup", "-1"], "--warmup"),
    (["--model", "vit_nope"], "vit_nope"), (["--model-arg", "depth"], "--model-arg"),
    (["--device", "tpu"], "device")])
def test_bad_flags_raise_before_any_work(bench, tmp_path, flags, message):
    out = tmp_path / "never.csv"
    with pytest.raises(ValueError, match=message):
        bench.main(["--end-to-end", "--tiny", "--device", "cpu", *flags, "--out", str(out)])
    assert not out.exists()


def test_end_to_end_takes_another_recipe_and_image_size(bench, tmp_path):
    out = tmp_path / "e2e.csv"
    bench.main(["--end-to-end", "--tiny", "--device", "cpu", "--model-arg", "depth=1", "--recipe", "vit_cpu",
                "--img-size", "8", "--rounds", "1", "--out", str(out)])
    rows = read(out)
    assert [(r["mode"], r["augment"]) for r in rows] == [
        ("synthetic", "none: one batch on the device"), ("recipe", "pad_crop 4px reflect + flip"),
        ("pad_crop+flip", "pad_crop 4px reflect + flip")]  # vit_cpu has no RandAugment nor Mixup
    assert {r["img_size"] for r in rows} == {"8"}
    with pytest.raises(ValueError, match="--recipe 'nope' is unknown; allowed: "):
        bench.main(["--end-to-end", "--tiny", "--device", "cpu", "--recipe", "nope", "--out", str(out)])
    with pytest.raises(ValueError, match="--img-size must be positive"):
        bench.main(["--end-to-end", "--tiny", "--device", "cpu", "--img-size", "0", "--out", str(out)])
