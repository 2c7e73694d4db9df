"""What a trained run ships: readable class names (Tiny-ImageNet's from words.txt), recorded in
config.json and in the weights' metadata, so `vitlib predict` and `attention` name classes without
the data set; a run folder of weights and records alone (no result.json, no checkpoint); and its
Hugging Face model card, made from those records."""
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vitlib.__main__ import main
from vitlib.data import get_dataset
from vitlib.experiments.trained import load_run_model, save_run_weights
from vitlib.report.modelcard import model_card
from vitlib.train.runfolder import differing_keys

pytestmark = pytest.mark.usefixtures("one_thread")
WNIDS = ["n03", "n01", "n02", "n04"]  # wnids.txt order; labels follow the sorted ids
WORDS = "n00\tentity\nn01\tgoldfish, Carassius auratus\nn02\tcrane\nn03\tcrane, bird\n"  # n04: not named
NAMES = ["goldfish", "crane (n02)", "crane (n03)", "n04"]  # labels 0-3 = n01, n02, n03, n04
MODEL_ARGS = dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64)


def tiny_imagenet(root: Path, words: str | None = WORDS, per_class=3) -> Path:
    """A Tiny-ImageNet-200 tree of 8 px images: train/<wnid>/images, val/images + annotations."""
    rng = np.random.default_rng(0)
    image = lambda: Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))  # noqa: E731
    (root / "val" / "images").mkdir(parents=True)
    annotations = []
    for k, wnid in enumerate(WNIDS):
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(per_class):
            image().save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", "PNG")
        for i in range(2):
            image().save(root / "val" / "images" / f"val_{k}{i}.JPEG", "PNG")
            annotations.append(f"val_{k}{i}.JPEG\t{wnid}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    if words is not None:
        (root / "words.txt").write_text(words)
    return root


def test_tiny_imagenet_classes_are_named_by_words_txt(tmp_path):
    tree = tiny_imagenet(tmp_path / "tiny-imagenet-200")
    zipped = tmp_path / "zipped" / "tiny-imagenet-200.zip"
    zipped.parent.mkdir()
    with zipfile.ZipFile(zipped, "w") as z:
        for file in sorted(tree.rglob("*")):
            z.write(file, f"tiny-imagenet-200/{file.relative_to(tree).as_posix()}")
    for source in (tree, zipped.parent):  # the extracted tree and the archive
        train = get_dataset("tiny-imagenet", "train", source)
        assert train.classes == ["n01", "n02", "n03", "n04"]  # the label ids are unchanged
        assert train.class_names == NAMES  # first synonym; a shared name gets its id; an unnamed id stays an id
        assert get_dataset("tiny-imagenet", "test", source).class_names == NAMES
    bare = get_dataset("tiny-imagenet", "train", tiny_imagenet(tmp_path / "bare", words=None))
    assert bare.class_names == bare.classes == ["n01", "n02", "n03", "n04"]


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    """A two-step ViT run on a fake Tiny-ImageNet (`vitlib train`), with its bf16 weights saved."""
    root = tmp_path_factory.mktemp("shipped")
    tree = tiny_imagenet(root / "data" / "tiny-imagenet-200")
    run = root / "runs" / "tiny"
    assert main(["train", "--model", "vit_ti4", "--dataset", "tiny-imagenet", "--data-dir", str(tree),
                 "--img-size", "8", "--out", str(run), "--steps", "2", "--batch-size", "4", "--tta-flip",
                 "--set", "warmup_steps=1", "--no-progress",
                 *[f"--model-arg={k}={v}" for k, v in MODEL_ARGS.items()]]) == 0
    model, _ = load_run_model(run)
    save_run_weights(model, run)
    image = root / "goldfish.png"
    shutil.copy(tree / "val" / "images" / "val_10.JPEG", image)  # PNG bytes: the data set's own decode
    return run, tree, image


def test_the_run_records_its_classes_and_its_weights_carry_them(shipped_run):
    from safetensors import safe_open

    run, _, _ = shipped_run
    train = json.loads((run / "config.json").read_text())["data"]["train"]
    assert train["classes"] == ["n01", "n02", "n03", "n04"] and train["class_names"] == NAMES
    with safe_open(str(run / "weights.safetensors"), "pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["classes"]) == train["classes"] and json.loads(metadata["class_names"]) == NAMES


def test_predict_and_attention_name_classes_from_the_record_alone(shipped_run, tmp_path, capsys, monkeypatch):
    run, _, image = shipped_run
    monkeypatch.setenv("VITLIB_DATA", str(tmp_path / "no-data-here"))  # the data set cannot be read
    bare = tmp_path / "bare"  # a run folder of weights and fit's records only, as the speedruns ship
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("result.json", "checkpoint.pt", "best.pt"))
    for folder in (run, bare):
        assert main(["predict", str(image), "--run", str(folder), "--top", "4"]) == 0
        lines = capsys.readouterr().out.splitlines()
        shown = [re.match(r" *[\d.]+%  (.+?)(?:  \((n0\d)\))?$", line).groups() for line in lines]
        # every class once, by name, with its WordNet id where the name does not say it
        assert sorted(shown) == sorted(zip(NAMES, ["n01", None, None, None]))
        assert main(["attention", str(image), "--run", str(folder), "--out", str(tmp_path / "map.png")]) == 0
        assert re.fullmatch(rf"wrote .*map\.png \(predicted ({'|'.join(map(re.escape, NAMES))})\)\n",
                            capsys.readouterr().out)


def test_a_run_that_recorded_no_classes_reads_them_from_the_data_set(shipped_run, tmp_path, capsys):
    run, tree, image = shipped_run
    old = tmp_path / "old"  # as the runs made before class lists were recorded
    shutil.copytree(run, old)
    config = json.loads((old / "config.json").read_text())
    for record in config["data"].values():
        record.pop("classes"), record.pop("class_names")
    (old / "config.json").write_text(json.dumps(config))
    assert main(["predict", str(image), "--run", str(old), "--data-dir", str(tree)]) == 0
    assert {line.split("%  ")[1].split("  (")[0] for line in capsys.readouterr().out.splitlines()} == set(NAMES)
    assert main(["predict", str(image), "--run", str(old), "--data-dir", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: data_dir ")


def test_an_unfinished_run_without_result_is_refused_in_one_line(shipped_run, tmp_path, capsys):
    run, _, image = shipped_run
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished, ignore=shutil.ignore_patterns("result.json"))
    (unfinished / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    assert main(["predict", str(image), "--run", str(unfinished)]) == 2
    assert capsys.readouterr().err == (f"error: {unfinished} is not a finished vitlib run folder (no result.json; "
                                       "run status: interrupted)\n")


def test_resuming_a_run_recorded_before_class_lists_is_allowed():
    old = {"data": {"train": {"name": "tiny-imagenet", "fingerprint": "abc"}}}
    new = {"data": {"train": {"name": "tiny-imagenet", "fingerprint": "abc", "classes": ["n01"],
                              "class_names": ["goldfish"]}}}
    assert differing_keys(old, new) == []
    renamed = {"data": {"train": {**new["data"]["train"], "class_names": ["n01"]}}}  # words.txt not beside the data
    assert differing_keys(new, renamed) == []
    relabelled = {"data": {"train": {**new["data"]["train"], "classes": ["n02"]}}}
    assert differing_keys(new, relabelled) == ["data.train.classes"]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_model_card_holds_the_runs_numbers(shipped_run):
    run, _, _ = shipped_run
    card = model_card(run)
    summary = json.loads((run / "summary.json").read_text())
    top1, tta = round(100 * summary["final"]["eval_acc"], 2), round(100 * summary["final"]["eval_acc_tta"], 2)
    meta = front_matter(card)
    assert (meta["pipeline_tag"], meta["library_name"], meta["metrics"]) == ("image-classification", "vitlib",
                                                                             ["accuracy"])
    assert meta["datasets"] == ["zh-plus/tiny-imagenet"] and "license" in meta
    assert {"vision-transformer", "tiny-imagenet"} <= set(meta["tags"])
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-classification" and result["dataset"]["split"] == "valid"
    assert [m["value"] for m in result["metrics"]] == [top1, tta]
    for section in ("## Model", "## Training data", "## Training recipe", "## Results", "## How to use",
                    "## Limitations", "## Re-make this run"):
        assert f"\n{section}\n" in card
    assert f"| last evaluation (these weights), 8 Tiny-ImageNet-200 `test` images | {top1:.2f}% |" in card
    assert f"| parameters | {summary['params']:,} |" in card and "| length | 2 steps," in card
    assert "0: goldfish, 1: crane (n02), 2: crane (n03), 3: n04" in card
    assert "\nvitlib train --model vit_ti4 --dataset tiny-imagenet --data-dir " in card  # result.json's command


def test_hugging_face_reads_the_cards_metadata(shipped_run):
    """huggingface_hub's own reader (an independent parser of the format) finds the accuracy."""
    hub = pytest.importorskip("huggingface_hub")
    run, _, _ = shipped_run
    data = hub.ModelCard(model_card(run)).data
    assert (data.pipeline_tag, data.library_name, data.datasets) == ("image-classification", "vitlib",
                                                                     ["zh-plus/tiny-imagenet"])
    final = json.loads((run / "summary.json").read_text())["final"]
    found = [(r.task_type, r.dataset_type, r.dataset_split, r.metric_type, r.metric_value) for r in data.eval_results]
    assert found == [("image-classification", "zh-plus/tiny-imagenet", "valid", "accuracy", round(100 * final[key], 2))
                     for key in ("eval_acc", "eval_acc_tta")]


def test_the_model_cards_python_predicts_as_vitlib_predict(shipped_run, tmp_path, capsys, monkeypatch):
    run, _, image = shipped_run
    folder = tmp_path / "downloaded"  # the folder as a model hub user gets it
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoint.pt", "best.pt"))
    shutil.copy(image, folder / "my_image.jpg")
    code = re.search(r"```python\n(.*?)```", model_card(folder), re.S).group(1)
    monkeypatch.chdir(folder)
    exec(compile(code, "model card", "exec"), {})
    name = capsys.readouterr().out.rsplit(" ", 1)[0]
    assert main(["predict", "my_image.jpg", "--run", ".", "--top", "1"]) == 0
    assert capsys.readouterr().out.split("%  ")[1].split("  (")[0].strip() == name


def test_model_card_writes_once_and_keeps_another_readme(shipped_run, tmp_path, capsys):
    run, _, _ = shipped_run
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    assert main(["model-card", str(folder)]) == 0
    assert capsys.readouterr().out == f"wrote {folder / 'README.md'}\n"
    assert (folder / "README.md").read_text() == model_card(folder)
    assert main(["model-card", str(folder)]) == 0 and "is up to date" in capsys.readouterr().out
    (folder / "README.md").write_text("# my notes\n")
    assert main(["model-card", str(folder)]) == 2
    assert capsys.readouterr().err == (f"error: {folder / 'README.md'} exists and is not the card this run's records "
                                       "give: pass --force to replace it\n")
    assert (folder / "README.md").read_text() == "# my notes\n"
    assert main(["model-card", str(folder), "--force"]) == 0
    assert (folder / "README.md").read_text() == model_card(folder)


@pytest.mark.parametrize("damage, message", [
    ("missing", "is not a run folder (no such folder)"),
    ("weights.safetensors", "has no weights.safetensors: a model card describes the weights.safetensors of a "
                            "finished training run"),
    ("summary.json", "has no summary.json"),
    ("interrupted", "summary.json says status 'interrupted', not complete"),
    ("garbled", "config.json is not valid JSON"),
])
def test_model_card_of_bad_input_is_one_line(shipped_run, tmp_path, capsys, damage, message):
    run, _, _ = shipped_run
    folder = tmp_path / "run"
    if damage != "missing":
        shutil.copytree(run, folder)
    if damage in ("weights.safetensors", "summary.json"):
        (folder / damage).unlink()
    elif damage == "interrupted":
        (folder / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    elif damage == "garbled":
        (folder / "config.json").write_text("{")
    assert main(["model-card", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder}") and message in err and err.count("\n") == 1
    assert not (folder / "README.md").exists()
