"""``python run.py compare`` as a user types it: a tiny 2 x 2 grid with an impossible pair and a
failing cell; the report's numbers against the cells' own results.json; skipping on re-run."""
import csv
import json

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli
from PIL import Image
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from core.errors import UserError

COMMON = ["train.steps=2", "train.batch_size=8", "train.val_every=2", "train.val_batches=1",
          "train.progress=false", "eval.probe_epochs=5", "optim.warmup_steps=1"]
# Per-modality tiny data and encoders as scoped overrides; views.name=null takes SimCLR's views
# away (an impossible pair on both rows); audio clips of 3200 samples give CPC 20 steps, so
# predicting 500 steps ahead makes the audio/cpc cells fail at their first step.
GRID = ["--modalities", "audio", "sequence", "--objectives", "cpc", "simclr", "--seeds", "0", "1",
        *(f"{m}:{o}" for m in ("audio", "sequence") for o in TINY[m]), *COMMON, "views.name=null",
        "cpc:objective.n_negatives=8", "audio/cpc:objective.prediction_steps=500"]


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return values.mean(), values.std(ddof=1)


T_975_1 = 12.706204736174707  # t_{0.975} with 1 degree of freedom (two seeds), from a t table


def interval(values):
    """'mean [low, high]' as comparison.md prints a mean of two seeds and its 95% t interval."""
    mean, std = mean_std(values)
    half = T_975_1 * std / np.sqrt(2)
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "grid"
    done = run_cli("compare", "--out", out, *GRID)
    return out, done


def test_grid_runs_compatible_pairs_and_reports_impossible_and_failed_ones(grid):
    out, done = grid
    assert done.returncode == 1, done.stderr  # some cells failed
    assert "audio/simclr: impossible, needs views" in done.stdout
    assert "sequence/simclr: impossible, needs views" in done.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "audio-cpc-seed0", "audio-cpc-seed1", "sequence-cpc-seed0", "sequence-cpc-seed1"]

    rows = {(r["modality"], r["objective"]): r for r in csv_rows(out / "comparison.csv")}
    assert set(rows) == {("audio", "cpc"), ("audio", "simclr"), ("sequence", "cpc"), ("sequence", "simclr")}
    assert rows["audio", "simclr"]["status"] == "impossible: needs views"
    failed = rows["audio", "cpc"]
    assert failed["status"] == "failed" and failed["seeds_failed"] == "2"
    log = out / "audio-cpc-seed0" / "log.txt"
    assert str(log) in failed["failures"] and "CPC predicts 500 steps ahead" in failed["failures"]
    assert "error: CPC predicts 500 steps ahead" in log.read_text()
    assert not (out / "audio-cpc-seed0" / "results.json").exists()


def test_table_numbers_are_mean_and_std_of_the_cells_results(grid):
    out, _ = grid
    results = [json.loads((out / f"sequence-cpc-seed{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in results] == [0, 1]
    row = next(r for r in csv_rows(out / "comparison.csv") if r["modality"] == "sequence"
               and r["objective"] == "cpc")
    assert row["seeds_done"] == "2" and float(row["chance"]) == pytest.approx(1 / 8) and row["eval_split"] == "test"
    assert all("svm_acc" in r["metrics"] and "svm_acc" in r["floor"] for r in results)  # checked in the loop below
    for key in results[0]["metrics"]:
        if not all(key in r["metrics"] and key in r["floor"] for r in results):
            continue  # a metric undefined on this data is left out of results.json
        if isinstance(results[0]["metrics"][key], dict):
            assert f"{key}_mean" not in row, key  # per-class metrics stay in results.json
            continue
        for prefix, part in (("", "metrics"), ("floor_", "floor")):
            mean, std = mean_std([r[part][key] for r in results])
            assert float(row[f"{prefix}{key}_mean"]) == pytest.approx(mean, abs=1e-9), key
            assert float(row[f"{prefix}{key}_std"]) == pytest.approx(std, abs=1e-9), key
            half = T_975_1 * std / np.sqrt(2)
            assert float(row[f"{prefix}{key}_ci_low"]) == pytest.approx(mean - half, abs=1e-9), key
            assert float(row[f"{prefix}{key}_ci_high"]) == pytest.approx(mean + half, abs=1e-9), key

    probe, floor = ([r[part]["linear_probe_acc"] for r in results] for part in ("metrics", "floor"))
    verdict = "beats floor" if np.mean(probe) > np.mean(floor) else "DOES NOT BEAT FLOOR"
    assert row["status"] == verdict and row["best"] == "True"  # the only finished pair of its row
    assert row["within_noise"] == ""  # no runner-up in its row
    assert row["budget"] == "2 steps, 1 epochs"  # 2 steps of 8 over 16 train series
    table = (out / "comparison.md").read_text().splitlines()
    assert "| modality | objective | linear probe | floor | SVM | floor | kNN | floor | chance |" in table[6]
    assert "linear probe test accuracy" in table[4]
    line = next(li for li in table if li.startswith("| sequence | cpc |"))
    assert f"**{interval(probe)}**" in line and interval(floor) in line
    svm, svm_floor = ([r[part]["svm_acc"] for r in results] for part in ("metrics", "floor"))
    assert line.split(" | ")[4:6] == [interval(svm), interval(svm_floor)]
    assert line.rstrip(" |").endswith(verdict)


def test_figure_is_a_png_of_the_grid_size(grid):
    from comparison.figure import BOTTOM, CELL_H, CELL_W, LEFT, MARGIN, TOP

    out, _ = grid
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(out / "comparison.png")
    assert image.size == (LEFT + 2 * CELL_W + MARGIN, TOP + 2 * CELL_H + BOTTOM)
    # An impossible pair is grey; the finished sequence/cpc cell is coloured.
    assert image.getpixel((LEFT + CELL_W + 5, TOP + 5)) == (215, 215, 215)
    assert image.getpixel((LEFT + 5, TOP + CELL_H + 8)) != (215, 215, 215)


def test_every_cell_is_a_tensorboard_run_of_the_comparison_folder(grid):
    out, _ = grid
    runs = EventMultiplexer().AddRunsFromDirectory(str(out)).Reload()
    assert {"sequence-cpc-seed0", "sequence-cpc-seed1"} <= set(runs.Runs())
    for seed in (0, 1):
        results = json.loads((out / f"sequence-cpc-seed{seed}" / "results.json").read_text())
        events = runs.Scalars(f"sequence-cpc-seed{seed}", "eval/linear_probe_acc")
        assert [e.value for e in events] == [pytest.approx(results["metrics"]["linear_probe_acc"])]


def test_rerun_skips_finished_cells_retries_failed_ones_and_refuses_other_settings(grid):
    out, _ = grid
    finished = [out / f"sequence-cpc-seed{s}" / "results.json" for s in (0, 1)]
    stamps = [p.stat().st_mtime_ns for p in finished]
    again = run_cli("compare", "--out", out, *GRID)
    assert again.returncode == 1
    assert again.stdout.count("finished before, skipped") == 2
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert (out / "audio-cpc-seed0" / "log.txt").read_text().count("$ ") == 2  # tried again, log appended

    other = run_cli("compare", "--out", out, *GRID, "sequence:train.steps=3")
    assert other.returncode == 2 and other.stderr.startswith("error: ")
    assert "sequence-cpc-seed0' was made with other settings (train.steps: 2 there, 3 now)" in other.stderr


def test_unknown_scope_is_a_one_sentence_error():
    done = run_cli("compare", "--modalities", "audio", "--objectives", "cpc", "--out", "/nonexistent/x",
                   "audoi:train.steps=3")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        ("error: override 'audoi:train.steps=3': scope 'audoi' is not a modality, objective or "
         "modality/objective of this comparison (did you mean 'audio'?)")]


def test_scope_split_leaves_colons_in_values_alone():
    from comparison.command import split_scope

    assert split_scope("data.path=C:/x", {"audio"}) == ("", "data.path=C:/x")
    assert split_scope("audio:data.path=a:b", {"audio"}) == ("audio", "data.path=a:b")
    with pytest.raises(UserError, match="scope 'x'"):
        split_scope("x:train.steps=1", {"audio"})


def test_default_budgets_are_valid_config_keys_of_their_pairs():
    from core import config as config_lib
    import modalities  # noqa: F401
    import objectives  # noqa: F401
    from core import registry
    from comparison.command import BUDGETS, cell_config, load_budgets

    names = {"modality": registry.modalities(), "objective": registry.names("objective")}
    raw = yaml.safe_load(BUDGETS.read_text())
    pairs = [(m, o) for m in names["modality"] for o in names["objective"]]
    scopes = {*names["modality"], *names["objective"], *(f"{m}/{o}" for m, o in pairs)}
    assert set(raw) <= scopes, f"unknown scopes {set(raw) - scopes}"
    budgets = load_budgets(BUDGETS, scopes)
    for m, o in pairs:
        overrides = [x for s in (m, o, f"{m}/{o}") for x in budgets.get(s, [])]
        cfg = cell_config(m, o, overrides)  # raises on an unknown key or a wrong type
        for text in overrides:
            key, value = config_lib.parse_override(text)
            assert config_lib.flatten(cfg)[key] == value


def test_a_table_of_cells_reported_on_different_splits_names_the_split_of_each_row(tmp_path):
    from comparison.command import Cell, Pair
    from comparison.report import markdown, mark_best, summarize

    def pair(modality, split):
        result = {"chance_acc": 0.5, "wall_time_s": 1.0, "metrics": {"linear_probe_acc": 0.9, "svm_acc": 0.8},
                  "floor": {"linear_probe_acc": 0.5, "svm_acc": 0.4}, **({"eval_split": split} if split else {})}
        return Pair(modality, "cpc", cells=[Cell(modality, "cpc", 0, tmp_path, [], results=result)])

    rows = [summarize(p) for p in (pair("audio", "val"), pair("sequence", None))]  # None: results.json before eval_split
    mark_best(rows)
    lines = markdown(rows, "cmd").splitlines()
    assert "accuracy on the split in the split column" in lines[4]
    assert lines[6].startswith("| modality | objective | split | linear probe | floor | SVM | floor |")
    assert lines[8].startswith("| audio | cpc | val | **0.900** | 0.500 | 0.800 | 0.400 |")
    assert lines[9].startswith("| sequence | cpc | test |")
    rows = [summarize(pair("audio", "val"))]
    mark_best(rows)
    assert "linear probe val accuracy" in markdown(rows, "cmd").splitlines()[4]
