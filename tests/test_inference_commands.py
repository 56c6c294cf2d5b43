"""``run.py embed``, ``run.py export`` and ``load_run`` on tiny finished runs (audio CLAP on the
built-in clips, sequence SupCon on a UCR pair), checked against the evaluation's own embedding
function and against forward passes of the checkpoint's encoder written here."""
import csv
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli

import modalities  # noqa: F401  (registers datasets and encoders)
import objectives  # noqa: F401  (registers objectives)
import run as cli
from evaluation.protocols import embed as evaluation_embed, frozen
from inference import load_run
from modalities.audio.loaders import read_audio
from training.build import build_model_and_data
from training.run_dir import load_trained_run_config

def checkpoint_model(run_dir):
    """(datasets, model in eval mode) rebuilt from config.yaml with the checkpoint's weights, on the CPU."""
    datasets, model, _ = build_model_and_data(load_trained_run_config(run_dir), torch.device("cpu"))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    return datasets, model.eval()


def embed_cli(capsys, *args):
    """``run.py embed ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main(["embed", *map(str, args)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_embed_of_the_test_split_equals_the_evaluations_embeddings(clap_run, tmp_path, capsys):
    status, out, err = embed_cli(capsys, clap_run, "--split", "test", "--out", tmp_path / "test.npz")
    assert status == 0, err
    assert "embed test: 16/16 items" in err and "16 items (test 16)" in out
    got = np.load(tmp_path / "test.npz")
    datasets, model = checkpoint_model(clap_run)
    encoders, objective = model["encoders"], model["objective"]
    with frozen(*encoders.values(), objective):
        expected = evaluation_embed(encoders["x"], datasets["test"], 64, torch.device("cpu"), objective)
    np.testing.assert_allclose(got["embedding"], expected["embedding"].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["joint"], expected["joint"].numpy(), atol=1e-5, rtol=0)
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["id"].tolist() == [f"audio_builtin/test/{i}" for i in range(16)]
    assert set(got["split"].tolist()) == {"test"} and got["index"].tolist() == list(range(16))
    assert got["classes"].tolist() == datasets["test"].classes and "row" not in got


def test_export_then_load_run_gives_the_run_folders_embeddings(clap_run, tmp_path):
    copy, out = tmp_path / "copy", tmp_path / "export"
    shutil.copytree(clap_run, copy)
    done = run_cli("export", copy, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(copy)  # the export must stand alone
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.json", "preprocess.json", "tokenizer.json",
                                                     "weights.safetensors", "x_encoder.pt2"]
    from safetensors import safe_open

    with safe_open(str(out / "weights.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("encoders.x.", "encoders.text.", "objective.")) for k in keys)
    assert any(k.startswith("objective.x_head.") for k in keys)
    spec = json.loads((out / "preprocess.json").read_text())
    assert (spec["sample_rate"], spec["clip_samples"], spec["channels"]) == (16000, 3200, 1)

    from_run, from_export = load_run(clap_run, "cpu"), load_run(out, "cpu")
    x = torch.stack([from_run.preprocess(np.sin(np.arange(3000) * f), 16000) for f in (0.01, 0.05, 0.2)])
    torch.testing.assert_close(from_export.embed(x), from_run.embed(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(from_export.embed_joint(x), from_run.embed_joint(x), atol=1e-6, rtol=0)
    texts = ["a rising chirp", "a quiet tone over heavy noise"]
    torch.testing.assert_close(from_export.embed_text(texts), from_run.embed_text(texts), atol=1e-6, rtol=0)
    assert from_export.classes == from_run.classes and from_export.step == from_run.step == 3
    program = torch.export.load(str(out / "x_encoder.pt2")).module()
    with torch.no_grad():
        torch.testing.assert_close(program(x), from_run.embed(x), atol=1e-5, rtol=0)  # batch 3, traced with 2


def docstring_example() -> str:
    """The code block after 'Example::' in load_run's docstring, dedented."""
    block = load_run.__doc__.split("Example::", 1)[1].split("\n\n")[1]
    return "\n".join(line[8:] for line in block.splitlines())


def test_the_load_run_docstring_example_runs_as_written(clap_run, tmp_path, monkeypatch):
    code = docstring_example()
    assert len(code.splitlines()) == 5 and "load_run(" in code
    run_path = re.search(r'load_run\("([^"]+)"\)', code).group(1)
    shutil.copytree(clap_run, tmp_path / run_path)
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "clip.wav", (0.2 * rng.standard_normal((6000, 2))).astype(np.float32), 22050)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(code, scope)
    _, model = checkpoint_model(clap_run)
    wave, _ = read_audio(tmp_path / "clip.wav", 16000, 3200)
    with torch.no_grad():
        expected = model["encoders"]["x"](torch.from_numpy(wave)[None, None])["embedding"]
    assert scope["z"].shape == (1, 32)
    torch.testing.assert_close(scope["z"], expected, atol=1e-5, rtol=0)


def write_clips(folder, rows, rate=8000):
    """A manifest.csv of (name, label) rows and their WAVs: 0.3 s stereo tones at ``rate``."""
    folder.mkdir()
    t = np.arange(int(0.3 * rate)) / rate
    for i, (name, label) in enumerate(rows):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t) * (1 if label == "low" else np.sign(np.sin(40 * t)))
        sf.write(folder / name, np.stack([tone, 0.5 * tone], 1).astype(np.float32), rate)
    with open(folder / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *rows])


def test_embed_data_of_an_audio_manifest_names_files_rows_and_labels(clap_run, tmp_path, capsys):
    rows = [(f"c{i}.wav", ("low", "high")[i % 2]) for i in range(10)]
    write_clips(tmp_path / "clips", rows)
    status, out, err = embed_cli(capsys, clap_run, "--data", tmp_path / "clips", "--out", tmp_path / "e.npz")
    assert status == 0, err
    got = np.load(tmp_path / "e.npz")
    assert sorted(got["id"].tolist()) == sorted(str(tmp_path / "clips" / n) for n, _ in rows)
    assert got["classes"].tolist() == ["high", "low"] and set(got["split"].tolist()) == {"train", "val", "test"}
    by_file = {name: (row, label) for row, (name, label) in enumerate(rows, start=1)}
    for file, row, label in zip(got["id"], got["row"], got["label"]):
        assert (row, got["classes"][label]) == by_file[file.rsplit("/", 1)[1]]
    _, model = checkpoint_model(clap_run)
    first = got["id"][0]
    wave, _ = read_audio(tmp_path / "clips" / first.rsplit("/", 1)[1], 16000, 3200)
    with torch.no_grad():
        embedding = model["encoders"]["x"](torch.from_numpy(wave)[None, None])["embedding"]
        joint = model["objective"].project_x(embedding)
    np.testing.assert_allclose(got["embedding"][0], embedding[0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["joint"][0], joint[0].numpy(), atol=1e-5, rtol=0)


def test_a_bad_file_is_named_or_skipped(clap_run, tmp_path, capsys):
    rows = [(f"c{i}.wav", ("low", "high")[i % 2]) for i in range(10)]
    write_clips(tmp_path / "clips", rows)
    (tmp_path / "clips" / "c3.wav").write_bytes(b"RIFF, but not audio")
    status, _, err = embed_cli(capsys, clap_run, "--data", tmp_path / "clips", "--out", tmp_path / "e.npz")
    assert status == 2 and not (tmp_path / "e.npz").exists()
    assert re.search(r"error: '[^']*c3\.wav' \(manifest row 4\): cannot be read as audio", err), err
    status, out, err = embed_cli(capsys, clap_run, "--data", tmp_path / "clips", "--skip-bad",
                                 "--out", tmp_path / "e.npz")
    assert status == 0, err
    assert "; skipped 1 unreadable file" in out
    ids = np.load(tmp_path / "e.npz")["id"].tolist()
    assert len(ids) == 9 and not any(i.endswith("c3.wav") for i in ids)


def write_ucr(folder, rng):
    """A 2-class UCR pair: 8 train series per class and 3 test series per class of 24 steps; one train
    value missing, one test series 18 steps long. Returns {file name: [label per line]}."""
    folder.mkdir()
    labels = {}
    for name, per_class in (("Toy_TRAIN.tsv", 8), ("Toy_TEST.tsv", 3)):
        lines, labels[name] = [], []
        for i in range(2 * per_class):
            label = 1 + i % 2
            values = np.sin(np.arange(24) * (0.2 if label == 1 else 0.9)) + 0.1 * rng.standard_normal(24)
            text = [f"{v:.5f}" for v in values]
            if name == "Toy_TRAIN.tsv" and i == 3:
                text[5] = "NaN"
            if name == "Toy_TEST.tsv" and i == 1:
                text = text[:18]
            lines.append("\t".join([str(label), *text]))
            labels[name].append(label)
        (folder / name).write_text("\n".join(lines) + "\n")
    return labels


@pytest.fixture(scope="module")
def ucr_run(tmp_path_factory):
    """(a 3-step sequence SupCon run trained on a UCR pair, the pair's folder, its labels)."""
    root = tmp_path_factory.mktemp("ucr")
    labels = write_ucr(root / "Toy", np.random.default_rng(0))
    done = run_cli("--modality", "sequence", "--objective", "supcon", "--data", root / "Toy", "--run-dir",
                   root / "run", "train.steps=3", "train.batch_size=8", "train.progress=false", "eval.probe_epochs=5",
                   "model.tcn.width=8", "model.tcn.depth=2")
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "run", root / "Toy", labels


def test_embed_data_of_a_ucr_pair_names_files_lines_and_labels(ucr_run, tmp_path, capsys):
    run_dir, data, labels = ucr_run
    status, out, err = embed_cli(capsys, run_dir, "--data", data, "--out", tmp_path / "e.npz")
    assert status == 0, err
    got = np.load(tmp_path / "e.npz")
    assert len(got["id"]) == 22 and "joint" not in got and got["classes"].tolist() == ["1", "2"]
    for file, row, split, label in zip(got["id"], got["row"], got["split"], got["label"]):
        name = file.rsplit("/", 1)[1]
        assert (name == "Toy_TEST.tsv") == (split == "test")
        assert int(got["classes"][label]) == labels[name][row - 1]
    test = got["split"] == "test"
    assert got["row"][test].tolist() == [1, 2, 3, 4, 5, 6]

    datasets, model = checkpoint_model(run_dir)
    item = datasets["test"][1]  # the 18-step series, padded and masked by the loader
    assert not item["mask"].all()
    with torch.no_grad():
        expected = model["encoders"]["x"](item["x"][None], mask=item["mask"][None])["embedding"][0]
    np.testing.assert_allclose(got["embedding"][test][1], expected.numpy(), atol=1e-5, rtol=0)
    raw = (data / "Toy_TEST.tsv").read_text().splitlines()[1].split("\t")[1:]
    loaded = load_run(run_dir, "cpu")
    x = loaded.preprocess(np.array(raw, dtype=float))
    torch.testing.assert_close(loaded.embed(x[None])[0], expected, atol=1e-5, rtol=0)

    status, _, err = embed_cli(capsys, run_dir, "--split", "test", "--out", tmp_path / "own.npz")
    assert status == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "own.npz")["embedding"], got["embedding"][test], atol=1e-6)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "python run.py embed --help" in shown and "python run.py export --help" in shown
    with pytest.raises(SystemExit):
        cli.main(["embed", "--help"])
    assert "--data PATH" in capsys.readouterr().out
