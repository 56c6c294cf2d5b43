"""`run.py eval RUN_DIR` end to end on a tiny trained paired run, and what the evaluation writes to TensorBoard."""
import io
import json

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

SCALAR_KEYS = {"linear_probe_acc", "linear_probe_balanced_acc", "linear_probe_macro_f1", "linear_probe_auroc",
               "svm_acc", "svm_c", "knn_acc", "alignment", "uniformity", "effective_rank", "zero_shot_acc",
               *(f"retrieval_{m}_{d}" for m in ("r1", "r5", "r10", "medr") for d in ("x2t", "t2x"))}
PAIRED_KEYS = SCALAR_KEYS | {"linear_probe_per_class_acc"}


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "audio": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained_clap(tmp_path_factory):
    """A 3-step audio CLAP run (train 4 clips per class, test 2); (run folder, its stderr)."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    done = run_cli("--modality", "audio", "--objective", "clap", "--run-dir", run_dir, "train.steps=3",
                   "train.batch_size=8", "train.progress=false", "eval.probe_epochs=5", "objective.proj_dim=16",
                   "model.text.text_transformer.width=16", "model.text.text_transformer.layers=1", *TINY["audio"])
    assert done.returncode == 0, done.stderr
    return run_dir, done.stderr


def test_training_writes_every_paired_metric_and_its_floor(trained_clap):
    run_dir, stderr = trained_clap
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["metrics"]) == set(results["floor"]) == PAIRED_KEYS
    assert results["eval_time_s"] > 0 and results["eval_split"] == "test"
    # 4 train clips per class: 4-fold cross-validation for the SVM, said once for the trained model and its floor.
    note = "note: svm: smallest train class has 4 items: 4-fold cross-validation instead of 5"
    assert stderr.splitlines().count(note) == 1, stderr
    for part, tag in (("metrics", "eval_embedding"), ("floor", "eval_floor_embedding")):
        m = results[part]
        assert m["svm_c"] in (1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4)
        # Accuracies and recalls count test clips: each is a multiple of 1/16 (16 test clips, one caption each).
        for key in ("linear_probe_acc", "svm_acc", "knn_acc", "zero_shot_acc",
                    *(f"retrieval_r{k}_{d}" for k in (1, 5, 10) for d in ("x2t", "t2x"))):
            assert m[key] * 16 == pytest.approx(round(m[key] * 16), abs=1e-6), (part, key)
        # The geometry metrics, recomputed in float64 loops from the embeddings the projector received.
        x, labels = projector_embeddings(run_dir, tag)
        assert m["alignment"] == pytest.approx(alignment_reference(x, labels), rel=1e-6), part
        assert m["uniformity"] == pytest.approx(uniformity_reference(x), rel=1e-6), part
        assert m["effective_rank"] == pytest.approx(effective_rank_reference(x), rel=1e-6), part


def projector_embeddings(run_dir, tag: str, step: int = 3):
    """(embeddings (N, D) float64, class names (N,)) that evaluation gave the TensorBoard projector."""
    folder = run_dir / f"{step:05d}" / tag
    x = np.loadtxt(folder / "tensors.tsv", delimiter="\t", ndmin=2)
    labels = [line.split("\t")[0] for line in (folder / "metadata.tsv").read_text().splitlines()[1:]]
    return x, labels


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def alignment_reference(x, labels) -> float:
    u, pairs = unit_rows(x), []
    for i in range(len(u)):
        for j in range(i + 1, len(u)):
            if labels[i] == labels[j]:
                pairs.append(((u[i] - u[j]) ** 2).sum())
    return float(np.mean(pairs))


def uniformity_reference(x, t: float = 2.0) -> float:
    u = unit_rows(x)
    terms = [np.exp(-t * ((u[i] - u[j]) ** 2).sum()) for i in range(len(u)) for j in range(i + 1, len(u))]
    return float(np.log(np.mean(terms)))


def effective_rank_reference(x) -> float:
    sigma = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def ranks_reference(items, captions):
    """1-based ranks of the matching row in both directions (pair i = item i, caption i), ties against."""
    sim = unit_rows(items) @ unit_rows(captions).T
    n = len(sim)
    x2t = [1 + sum(sim[i, j] >= sim[i, i] for j in range(n) if j != i) for i in range(n)]
    t2x = [1 + sum(sim[j, i] >= sim[i, i] for j in range(n) if j != i) for i in range(n)]
    return np.array(x2t), np.array(t2x)


def test_retrieval_equals_ranks_recomputed_from_the_checkpoint(trained_clap):
    """R@k and median rank of results.json against ranks counted in float64 loops from the joint-space
    embeddings of the checkpoint's model (16 test clips, each with its own caption)."""
    import modalities  # noqa: F401  (registers datasets and encoders)
    import objectives  # noqa: F401  (registers objectives)
    from training.build import build_model_and_data
    from training.run_dir import load_trained_run_config

    run_dir, _ = trained_clap
    cfg = load_trained_run_config(run_dir)
    datasets, model, _ = build_model_and_data(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    model.eval()
    test = datasets["test"]
    with torch.no_grad():
        batch = {"x": torch.stack([test[i]["x"] for i in range(len(test))])}
        items = model["objective"].embed_x(model["encoders"], batch).double().numpy()
        captions = model["objective"].embed_text(model["encoders"], list(test.captions)).double().numpy()
    m = json.loads((run_dir / "results.json").read_text())["metrics"]
    for direction, ranks in zip(("x2t", "t2x"), ranks_reference(items, captions)):
        for k in (1, 5, 10):
            assert m[f"retrieval_r{k}_{direction}"] == pytest.approx(np.mean(ranks <= k), abs=1e-6), (direction, k)
        assert m[f"retrieval_medr_{direction}"] == pytest.approx(float(np.median(ranks))), direction


def test_tensorboard_gets_eval_scalars_hparams_projector_audio_and_similarity(trained_clap):
    trained_clap, _ = trained_clap
    acc = events(trained_clap)
    tags = acc.Tags()
    for key in SCALAR_KEYS:
        assert f"eval/{key}" in tags["scalars"] and f"eval/floor_{key}" in tags["scalars"], key
    results = json.loads((trained_clap / "results.json").read_text())
    for key, part in (("svm_acc", "metrics"), ("floor_svm_acc", "floor"), ("svm_c", "metrics")):
        assert [e.value for e in acc.Scalars(f"eval/{key}")] == [
            pytest.approx(results[part][key.removeprefix("floor_")])], key
    assert "train/logit_scale" in tags["scalars"]  # CLAP's learnt scale, one point per step
    assert [s.step for s in acc.Scalars("train/logit_scale")] == [1, 2, 3]
    assert "eval/similarity_matrix" in tags["images"]
    assert any(t.startswith("eval/audio/") for t in tags["audio"])

    # hparams: one entry in the run's own folder (no sub-folder run), naming the run and its metrics.
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["modality"].string_value == "audio" and hparams["objective"].string_value == "clap"
    assert hparams["steps"].number_value == 3 and hparams["eval.split"].string_value == "test"
    assert not list(trained_clap.glob("*/events.out.tfevents.*"))
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {f"eval/{k}" for k in SCALAR_KEYS}

    projector = (trained_clap / "projector_config.pbtxt").read_text()
    assert "eval_embedding:00003" in projector and "eval_floor_embedding:00003" in projector
    metadata = (trained_clap / "00003" / "eval_embedding" / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "class\tcaption" and len(metadata) == 1 + 16


def test_tensorboard_gets_the_probe_confusion_matrix_and_per_class_accuracy(trained_clap):
    """Per-class accuracy scalars equal results.json; the confusion-matrix image in the event file is
    C cells square, and each diagonal cell has the colour of its class's accuracy (the fraction of its row)."""
    from PIL import Image

    from evaluation.confusion_image import CELL_RANGE, LEFT, MARGIN, MAX_SIDE, MIN_WIDTH, TOP, colour

    run_dir, _ = trained_clap
    acc = events(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    for part, prefix in (("metrics", "eval/"), ("floor", "eval/floor_")):
        per_class = results[part]["linear_probe_per_class_acc"]
        assert len(per_class) == 8 and all(v * 2 == round(v * 2) for v in per_class.values())  # 2 clips per class
        for name, value in per_class.items():
            tag = f"{prefix}linear_probe_per_class_acc/{name.replace(' ', '_')}"
            assert [e.value for e in acc.Scalars(tag)] == [pytest.approx(value)], tag
        assert np.mean(list(per_class.values())) == pytest.approx(results[part]["linear_probe_balanced_acc"])
        image_tag = f"{prefix}confusion_matrix"
        assert image_tag in acc.Tags()["images"], image_tag
        event = acc.Images(image_tag)[0]
        cell = int(np.clip(MAX_SIDE // 8, *CELL_RANGE))
        size = (max(MIN_WIDTH, LEFT + 8 * cell + MARGIN), TOP + 8 * cell + MARGIN)
        assert event.step == 3 and (event.width, event.height) == size
        pixels = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        for i, value in enumerate(per_class.values()):  # classes in label order, every class in the test split
            corner = pixels[TOP + i * cell + 1, LEFT + i * cell + 1]
            np.testing.assert_allclose(corner, colour(value), atol=1, err_msg=f"{part} class {i}")


def test_eval_command_recomputes_the_same_numbers(trained_clap):
    trained_clap, _ = trained_clap
    before = json.loads((trained_clap / "results.json").read_text())
    (trained_clap / "results.json").write_text(json.dumps({**before, "metrics": {}, "floor": {}}))
    done = run_cli("eval", trained_clap)
    assert done.returncode == 0, done.stderr
    assert "zero_shot_acc" in done.stdout
    after = json.loads((trained_clap / "results.json").read_text())
    assert after["metrics"] == before["metrics"] and after["floor"] == before["floor"]
    assert after["metrics"]["svm_acc"] == before["metrics"]["svm_acc"] and "svm_acc" in after["floor"]
    assert done.stderr.count("note: svm:") == 1
    assert {k: v for k, v in after.items() if k != "eval_time_s"} == {k: v for k, v in before.items()
                                                                       if k != "eval_time_s"}
    # The eval command logs at the checkpoint's step, in the same folder, without a second projector entry.
    assert torch.load(trained_clap / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    values = [e.value for e in events(trained_clap).Scalars("eval/knn_acc")]
    assert values == [pytest.approx(before["metrics"]["knn_acc"])] * 2
    assert (trained_clap / "projector_config.pbtxt").read_text().count("eval_embedding:00003") == 1

    # A protocol override changes the numbers it should and leaves the training fields alone.
    done = run_cli("eval", trained_clap, "eval.knn_k=1")
    assert done.returncode == 0, done.stderr
    changed = json.loads((trained_clap / "results.json").read_text())
    assert changed["metrics"]["linear_probe_acc"] == before["metrics"]["linear_probe_acc"]
    assert changed["metrics"]["svm_acc"] == before["metrics"]["svm_acc"]
    assert changed["wall_time_s"] == before["wall_time_s"]

    # eval.split=val: every protocol on the val split (2 clips per class), recorded; test again restores the numbers.
    done = run_cli("eval", trained_clap, "eval.split=val")
    assert done.returncode == 0, done.stderr
    on_val = json.loads((trained_clap / "results.json").read_text())
    assert on_val["eval_split"] == "val" and on_val["metrics"] != before["metrics"]
    assert on_val["metrics"]["svm_c"] == before["metrics"]["svm_c"]  # chosen on train alike
    assert run_cli("eval", trained_clap).returncode == 0
    again = json.loads((trained_clap / "results.json").read_text())
    assert again["eval_split"] == "test" and again["metrics"] == before["metrics"]


def test_eval_command_errors_are_one_sentence(tmp_path, trained_clap):
    trained_clap, _ = trained_clap
    for args, fragment in [((tmp_path,), "is not a run directory"),
                           ((trained_clap, "train.steps=5"), "only takes eval.* and device overrides"),
                           ((trained_clap, "eval.split=tset"), "eval.split must be test or val")]:
        done = run_cli("eval", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], done.stderr
    done = run_cli("eval", "--help")
    assert done.returncode == 0 and "RUN_DIR" in done.stdout and "eval.key=value" in done.stdout


def test_projector_of_2d_images_carries_thumbnails(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    import modalities  # noqa: F401  (registers datasets)
    from core import registry
    from evaluation.tensorboard_extras import THUMBNAIL, log_projector, thumbnails

    images = registry.build("dataset", "medical_builtin", split="test", seed=0, test_per_class=1)
    thumbs = thumbnails(images, len(images))
    assert thumbs.shape == (8, 1, THUMBNAIL, THUMBNAIL) and thumbs.min() == 0 and thumbs.max() == 1
    series = registry.build("dataset", "sequence_builtin", split="test", seed=0, test_per_class=1, length=32)
    assert thumbnails(series, len(series)) is None

    writer = SummaryWriter(str(tmp_path))
    log_projector(writer, "eval_embedding", {"embedding": torch.randn(8, 4), "label": images.labels}, images, 7)
    writer.close()
    assert (tmp_path / "00007" / "eval_embedding" / "sprite.png").is_file()
    assert "sprite" in (tmp_path / "projector_config.pbtxt").read_text()
