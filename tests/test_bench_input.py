"""bench/input_pipeline.py runs end to end at a tiny size on the CPU and writes its CSV."""
import csv
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "input_pipeline.py"


def test_input_pipeline_bench_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITLIB_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("input_pipeline", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.csv"
    bench.main(["--dataset", "fake", "--device", "cpu", "--batches", "5", "--warmup", "1",
                "--batch-size", "16", "--workers", "1", "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [(r["pipeline"], r["augment"]) for r in rows] == [
        ("BatchStream", "pad_crop+flip"), ("DataLoader+torchvision", "pad_crop+flip"),
        ("BatchStream", "randaugment+mixup"), ("DataLoader+torchvision", "randaugment+mixup")]
    for row in rows:
        assert float(row["images_per_s"]) > 0 and row["device_name"] == "cpu" and row["torch"]
        assert row["batches"] == "5" and row["dataset"] == "fake" and row["git_commit"]
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-5].startswith("pipeline") and printed[-1].startswith("DataLoader+torchvision")
