"""Multi-label medical manifests ('|' in the label column) on real PNG files: parsing, splits, the
multi-label SupCon loss against a float64 loop, ce's binary cross-entropy, the objectives that refuse
multi-hot labels, and a tiny run that reports per-label AUROC."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import modalities  # noqa: F401  (registers datasets and encoders)
import objectives  # noqa: F401  (registers objectives)
from conftest import run_cli
from core import config as config_lib
from core import registry
from core.errors import UserError
from modalities.user_data import DataError
from objectives.functional import multilabel_supcon_loss, supcon_loss
from objectives.labels import MULTI_LABEL_OBJECTIVES, label_mode
from training.build import build_datasets, build_model, resolve_dataset
from training.compatibility import missing_capabilities

FINDINGS = ("effusion", "mass", "nodule")
# (label text as a user writes it, split): every finding is in train; the test split has each finding
# on some rows and not on others; 'nodule|effusion' is written unsorted, 'effusion|mass|nodule' only in test;
# 'no finding' in any case is a row with none of the findings (names are otherwise case-sensitive).
ROWS = ([("effusion", "train"), ("mass", "train"), ("nodule", "train"), ("effusion|nodule", "train"),
         ("mass|nodule", "train"), ("no finding", "train"), ("nodule|effusion", "train"), ("No Finding", "train")] * 3
        + [("effusion", "val"), ("mass|nodule", "val"), ("no finding", "val"), ("nodule", "val")]
        + [("effusion", "test"), ("mass", "test"), ("nodule", "test"), ("effusion|nodule", "test"),
           ("no finding", "test"), ("effusion|mass|nodule", "test"), ("mass|nodule", "test"), ("mass", "test")])


def finding_image(text: str, rng, size: int = 32) -> np.ndarray:
    """Noise, with a bright band at the bottom (effusion), a large block (mass), a small dot (nodule)."""
    img = rng.integers(0, 50, (size, size)).astype(np.uint8)
    names = {part.strip().lower() for part in text.split("|")}
    if "effusion" in names:
        img[-size // 4:, :] = 230
    if "mass" in names:
        img[4:16, 4:16] = 200
    if "nodule" in names:
        img[8:11, 22:25] = 255
    return img


def write_manifest(folder, rows=ROWS, seed=0):
    rng, lines = np.random.default_rng(seed), ["path,report,label,split"]
    for i, (text, split) in enumerate(rows):
        Image.fromarray(finding_image(text, rng)).save(folder / f"im{i}.png")
        lines.append(f"im{i}.png,Report {i}: {text}.,{text},{split}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def expected_target(text: str) -> list[float]:
    names = {part.strip() for part in text.split("|")}
    return [float(f in names) for f in FINDINGS]


def load(folder, split):
    return registry.build("dataset", "medical_manifest", split=split, seed=0, path=str(folder), image_size=16)


def test_manifest_with_bar_separated_labels_gives_multi_hot_targets(tmp_path, capsys):
    write_manifest(tmp_path)
    splits = {s: load(tmp_path, s) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [24, 4, 8]
    for ds in splits.values():
        assert ds.multi_label and ds.classes == list(FINDINGS)
        assert ds.labels.dtype == torch.float32 and ds.labels.shape == (len(ds), 3)
        for i, row in enumerate(ds.rows):  # manifest row numbers are 1-based
            assert ds.labels[i].tolist() == expected_target(ROWS[row - 1][0]), ROWS[row - 1]
        assert ds[0]["label"].shape == (3,) and ds.x.shape[1:] == (1, 16, 16)
    assert splits["test"].labels.sum(0).tolist() == [3, 4, 4]
    assert "multi-label ('|' in the label column): 3 labels (effusion, mass, nodule); 8 rows are 'no finding'" in (
        capsys.readouterr().err)


def test_multi_label_splits_check_each_label_not_each_combination(tmp_path):
    only_in_test = ROWS[:8] + [("effusion|pneumothorax", "test")]
    write_manifest(tmp_path, only_in_test)
    with pytest.raises(DataError, match="label 'pneumothorax' is on rows of the test split but on no train row"):
        load(tmp_path, "train")
    write_manifest(tmp_path, ROWS[:8] + [("no finding|nodule", "test")])
    with pytest.raises(DataError, match=r"row 9: label 'no finding\|nodule' combines 'no finding' with findings"):
        load(tmp_path, "train")
    write_manifest(tmp_path, [(text, "train") for text, _ in ROWS[:8] * 4])  # no split column needed
    (tmp_path / "manifest.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in
                                                     (tmp_path / "manifest.csv").read_text().splitlines()) + "\n")
    carved = {s: load(tmp_path, s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in carved.values()) == 32 and len(carved["test"]) > 0
    assert carved["train"].labels.sum(0).min() > 0  # stratified by combination: every label stays in train


def supcon_reference(features: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    """SupCon L_out in float64 loops: positives are other views of the sample or rows sharing a label."""
    f = features.double().numpy()
    batch, views, _ = f.shape
    z = [(b, f[b, v] / np.linalg.norm(f[b, v])) for b in range(batch) for v in range(views)]
    y = labels.numpy() > 0.5
    losses = []
    for i, (bi, zi) in enumerate(z):
        others = [j for j in range(len(z)) if j != i]
        log_denominator = np.log(sum(np.exp(zi @ z[j][1] / t) for j in others))
        positives = [j for j in others if z[j][0] == bi or (y[bi] & y[z[j][0]]).any()]
        if positives:
            losses.append(-np.mean([zi @ z[p][1] / t - log_denominator for p in positives]))
    return float(np.mean(losses))


def test_multilabel_supcon_matches_a_float64_loop():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 2, 5, generator=g)
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=torch.float32)
    expected = supcon_reference(features, labels, 0.1)
    assert multilabel_supcon_loss(features, labels, 0.1).item() == pytest.approx(expected, rel=1e-5)
    assert supcon_loss(features, labels, 0.1).item() == pytest.approx(expected, rel=1e-5)
    one_view = features[:, :1]  # rows 1 and 4 have no label and no other view: left out as anchors
    assert supcon_loss(one_view, labels, 0.5).item() == pytest.approx(supcon_reference(one_view, labels, 0.5),
                                                                       rel=1e-5)
    classes = torch.tensor([0, 2, 1, 0, 2, 1])  # one-hot labels are SupCon's class labels
    one_hot = torch.eye(3)[classes]
    assert supcon_loss(features, one_hot, 0.2).item() == pytest.approx(supcon_loss(features, classes, 0.2).item(),
                                                                        rel=1e-6)
    with pytest.raises(ValueError, match="tiled path takes one class per row"):
        supcon_loss(features, labels, 0.1, tiled=True)


def tiny_config(folder, objective: str, *overrides) -> dict:
    cfg = config_lib.load_config("medical", objective, overrides=[
        f"data.path={str(folder)!r}", "data.medical_manifest.image_size=16", "model.resnet18.width=4",
        "model.text.text_transformer.width=16", "model.text.text_transformer.layers=1", *overrides])
    cfg["data"]["name"] = resolve_dataset(cfg)
    return cfg


@pytest.fixture(scope="module")
def manifest_datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    write_manifest(folder)
    return folder, build_datasets(tiny_config(folder, "supcon"))


def test_objectives_that_read_one_label_refuse_multi_label_data_in_one_sentence(manifest_datasets):
    folder, datasets = manifest_datasets
    for objective, option in [("triplet", None), ("dcl", "objective.use_labels=true"),
                              ("contrastive", "objective.use_labels=true"), ("moco", "objective.supervised=true"),
                              ("supcon", "objective.decoupled=true"), ("supcon", "objective.tiled=true")]:
        cfg = tiny_config(folder, objective, *([option] if option else []))
        with pytest.raises(UserError) as err:
            build_model(cfg, datasets["train"])
        message = str(err.value)
        assert f"objective '{objective}'" in message and "objectives that use multi-label data: supcon, ce" in message
        assert message.count(". ") == 0 and "\n" not in message, message
    accepting, refused = set(), set()
    for objective in registry.names("objective"):  # default options; label-free objectives build without error
        cfg = tiny_config(folder, objective)
        if missing_capabilities(cfg):
            continue
        try:
            mode = label_mode(build_model(cfg, datasets["train"])["objective"])
        except UserError:
            refused.add(objective)
            continue
        if mode == "multi":
            accepting.add(objective)
    assert accepting == set(MULTI_LABEL_OBJECTIVES) and refused == {"triplet"}


def test_ce_on_multi_hot_labels_is_binary_cross_entropy_per_label(manifest_datasets):
    folder, datasets = manifest_datasets
    model = build_model(tiny_config(folder, "ce", "objective.label_smoothing=0.2"), datasets["train"])
    train = datasets["train"]
    batch = {"x": train.x[:8], "label": train.labels[:8]}
    model.eval()
    with torch.no_grad():
        out = model["objective"](model["encoders"], batch)
        logits = model["objective"].head(model["encoders"]["x"](batch["x"])["embedding"]).double()
    p, y = torch.sigmoid(logits), batch["label"].double() * 0.8 + 0.1
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    right = ((logits > 0) == (batch["label"] > 0.5)).double().mean()
    assert out["label_acc"].item() == pytest.approx(right.item())


def test_tiny_multi_label_run_reports_per_label_auroc_and_eval_rewrites_it(tmp_path):
    write_manifest(tmp_path)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "medical", "--objective", "supcon", "--data", tmp_path, "--run-dir", run_dir,
                   "train.steps=3", "train.batch_size=8", "train.val_every=0", "train.progress=false",
                   "eval.probe_epochs=20", "data.medical_manifest.image_size=32", "model.resnet18.width=4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("note: multi-label data: svm_acc, knn_acc are left out") == 1, done.stderr
    assert "note: online evaluation: the train split is multi-label, so train/online_probe_acc" in done.stderr
    assert "linear probe macro AUROC" in done.stdout
    results = json.loads((run_dir / "results.json").read_text())
    for part in ("metrics", "floor"):
        m = results[part]
        assert not {"linear_probe_acc", "svm_acc", "knn_acc"} & set(m), part
        per_label = m["linear_probe_per_label_auroc"]
        assert set(per_label) == set(FINDINGS) and all(0 <= v <= 1 for v in per_label.values())
        assert m["linear_probe_macro_auroc"] == pytest.approx(np.mean(list(per_label.values())))
        # An AUROC over 8 test items: a count of (positive, negative) pairs, ties as halves, over P * N.
        for name, positives in zip(FINDINGS, (3, 4, 4)):
            pairs = positives * (8 - positives)
            assert per_label[name] * pairs * 2 == pytest.approx(round(per_label[name] * pairs * 2)), name
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    for name in FINDINGS:
        tag = f"eval/linear_probe_per_label_auroc/{name}"
        value = results["metrics"]["linear_probe_per_label_auroc"][name]
        assert [e.value for e in acc.Scalars(tag)] == [pytest.approx(value)], tag
    assert "eval/confusion_matrix" not in acc.Tags()["images"]  # one label per item has no confusion matrix here
    metadata = (run_dir / "00003" / "eval_embedding" / "metadata.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in metadata] == [text for text, split in ROWS if split == "test"]

    (run_dir / "results.json").write_text(json.dumps({**results, "metrics": {}, "floor": {}}))
    again = run_cli("eval", run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    rewritten = json.loads((run_dir / "results.json").read_text())
    assert rewritten["metrics"] == results["metrics"] and rewritten["floor"] == results["floor"]
    # Fine-tuning and label fractions stratify by (or score) one label per item: left out, said once.
    one_label = run_cli("eval", run_dir, "eval.finetune=true", "eval.label_fractions=[0.5]")
    assert one_label.returncode == 0, one_label.stderr[-3000:]
    assert one_label.stderr.count("note: multi-label data: svm_acc, knn_acc, finetune_acc and "
                                  "linear_probe_acc@<f>% are left out") == 1, one_label.stderr
    rewritten = json.loads((run_dir / "results.json").read_text())
    assert rewritten["metrics"] == results["metrics"] and rewritten["floor"] == results["floor"]

    refused = run_cli("--modality", "medical", "--objective", "triplet", "--data", tmp_path, "--run-dir",
                      tmp_path / "triplet", "train.steps=1", "data.medical_manifest.image_size=32")
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("note: ")]  # notes: the data read
    assert refused.returncode == 2 and len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert errors[0].startswith("error: objective 'triplet'"), refused.stderr
    assert "objectives that use multi-label data: supcon, ce" in errors[0]
