"""A comparison that knows its noise: 95% t intervals by hand, "within noise" on hand-made result
sets, the --budget arithmetic on hand-made sizes, and one tiny real 2-seed compare with label fractions."""
import csv
import json
import math

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli
from PIL import Image

from comparison.budget import Budget, budget_steps, parse_budget
from comparison.command import Cell, Pair
from comparison.report import mark_best, markdown, summarize, write_csv
from comparison.stats import overlap, summarize_values
from core.errors import UserError

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # t_{0.975, df} from a printed t table (3 decimals)


def test_interval_of_one_two_three_is_two_plus_minus_two_point_four_eight_four():
    stat = summarize_values([1.0, 2.0, 3.0])
    assert stat.mean == 2.0 and stat.std == 1.0 and stat.n == 3
    half = T_975[2] * 1.0 / math.sqrt(3)  # 2.484
    assert round(half, 3) == 2.484
    assert stat.low == pytest.approx(2 - half, abs=1e-3) and stat.high == pytest.approx(2 + half, abs=1e-3)


@pytest.mark.parametrize("values", [[0.5, 0.7], [0.81, 0.79, 0.86, 0.8], [0.1, 0.3, 0.2, 0.9, 0.4]])
def test_interval_matches_numpy_and_the_t_table(values):
    stat = summarize_values(values)
    x = np.asarray(values)
    half = T_975[len(x) - 1] * x.std(ddof=1) / np.sqrt(len(x))
    assert stat.mean == pytest.approx(x.mean()) and stat.std == pytest.approx(x.std(ddof=1))
    assert stat.low == pytest.approx(x.mean() - half, abs=1e-3 * x.std(ddof=1))
    assert stat.high == pytest.approx(x.mean() + half, abs=1e-3 * x.std(ddof=1))


def test_fewer_than_two_values_have_no_interval_and_missing_values_are_left_out():
    assert summarize_values([0.4, None, float("nan")])[:] == (0.4, None, None, None, 1)
    assert summarize_values([]).mean is None
    assert overlap(summarize_values([0.4]), summarize_values([0.3, 0.5])) is None


def pair(modality, objective, accuracies, floors=None, tmp="/tmp/x"):
    """A Pair of finished cells whose results hold only the given accuracies."""
    floors = floors or [0.1] * len(accuracies)
    cells = [Cell(modality, objective, seed, tmp, [], results={
        "chance_acc": 0.125, "wall_time_s": 1.0, "steps": 10, "epochs": 2.5, "eval_split": "test",
        "metrics": {"linear_probe_acc": a}, "floor": {"linear_probe_acc": f}})
        for seed, (a, f) in enumerate(zip(accuracies, floors))]
    return Pair(modality, objective, cells=cells)


def report_rows(*pairs):
    rows = [summarize(p) for p in pairs]
    mark_best(rows)
    return rows


def test_best_is_within_noise_when_its_interval_overlaps_the_runner_ups():
    # simclr: mean 0.82, s 0.02, half 4.303 x 0.02 / sqrt 3 = 0.0497 -> [0.770, 0.870];
    # supcon: mean 0.80 -> [0.750, 0.850]: overlap. cpc (0.5) is not the runner-up.
    rows = report_rows(pair("audio", "cpc", [0.49, 0.50, 0.51]), pair("audio", "supcon", [0.78, 0.80, 0.82]),
                       pair("audio", "simclr", [0.80, 0.82, 0.84]))
    best = {r["objective"]: (r["best"], r["within_noise"]) for r in rows}
    assert best == {"cpc": (False, ""), "supcon": (False, ""), "simclr": (True, "supcon")}
    text = markdown(rows, "cmd")
    assert "| audio | simclr | **0.820 [0.770, 0.870]** ≈ | 0.100 [0.100, 0.100] |" in text
    assert "Best objective per modality: audio: simclr, within noise of supcon (the 95% intervals overlap)." in text


def test_best_is_not_within_noise_when_the_intervals_are_apart():
    # 0.91 +- 0.025 against 0.51 +- 0.025: far apart.
    rows = report_rows(pair("audio", "supcon", [0.50, 0.51, 0.52]), pair("audio", "simclr", [0.90, 0.91, 0.92]))
    assert [(r["best"], r["within_noise"]) for r in rows] == [(False, ""), (True, "")]
    text = markdown(rows, "cmd")
    assert "| audio | simclr | **0.910 [0.885, 0.935]** | " in text
    assert "audio: simclr, ahead of supcon beyond noise (the 95% intervals do not overlap)" in text


def test_two_seed_intervals_are_wide_and_one_seed_is_noise_unknown():
    # Two seeds 0.02 apart: s = 0.01 x sqrt 2, half = 12.706 x s / sqrt 2 = 0.127.
    # [0.79, 0.81] -> [0.673, 0.927] against [0.52, 0.54] -> [0.403, 0.657]: apart;
    # [0.76, 0.78] -> [0.643, 0.897]: overlaps [0.403, 0.657].
    a, b, c = summarize_values([0.79, 0.81]), summarize_values([0.52, 0.54]), summarize_values([0.76, 0.78])
    assert a.low == pytest.approx(0.8 - 0.12706, abs=1e-4) and b.high == pytest.approx(0.53 + 0.12706, abs=1e-4)
    assert overlap(a, b) is False and overlap(c, b) is True and overlap(b, c) is True
    rows = report_rows(pair("sequence", "ce", [0.9]), pair("sequence", "cpc", [0.6]))
    assert rows[0]["best"] and rows[0]["within_noise"] == ""
    assert "sequence: ce, ahead of cpc; noise unknown (an interval needs 2 or more seeds)" in markdown(rows, "cmd")


def test_csv_has_the_interval_bounds_and_the_within_noise_column(tmp_path):
    rows = report_rows(pair("audio", "supcon", [0.78, 0.80, 0.82], [0.3, 0.4, 0.5]),
                       pair("audio", "simclr", [0.80, 0.82, 0.84]))
    write_csv(tmp_path / "c.csv", rows)
    with open(tmp_path / "c.csv", newline="") as f:
        table = {r["objective"]: r for r in csv.DictReader(f)}
    half = T_975[2] * 0.02 / math.sqrt(3)
    assert float(table["supcon"]["linear_probe_acc_ci_low"]) == pytest.approx(0.80 - half, abs=1e-4)
    assert float(table["supcon"]["linear_probe_acc_ci_high"]) == pytest.approx(0.80 + half, abs=1e-4)
    floor_half = T_975[2] * 0.1 / math.sqrt(3)
    assert float(table["supcon"]["floor_linear_probe_acc_ci_low"]) == pytest.approx(0.4 - floor_half, abs=1e-3)
    assert table["simclr"]["within_noise"] == "supcon" and table["supcon"]["within_noise"] == ""
    assert table["simclr"]["budget"] == "10 steps, 2.5 epochs"


@pytest.mark.parametrize("budget, batch, accumulate, n_train, steps", [
    ("epochs=5", 32, 1, 1024, 160),      # 5 x 1024 / 32
    ("epochs=2.5", 64, 2, 1000, 20),     # 2500 / 128 = 19.5 -> 20
    ("samples=9600", 32, 1, 1024, 300),  # 9600 / 32
    ("samples=9600", 64, 1, 1024, 150),
    ("samples=100", 32, 1, 20, 5),       # split of 20 < batch 32: one batch of 20
    ("epochs=3", 32, 1, 20, 3),          # 60 / 20
    ("steps=7", 32, 4, 1024, 7),
])
def test_budget_arithmetic_on_hand_made_sizes(budget, batch, accumulate, n_train, steps):
    assert budget_steps(parse_budget(budget), batch, accumulate, n_train) == steps


@pytest.mark.parametrize("text", ["epochs", "epoch=5", "epochs=0", "samples=9.5", "steps=-1", "samples=x",
                                  "epochs=inf"])
def test_a_bad_budget_is_an_error_naming_the_forms(text):
    with pytest.raises(UserError, match="expected steps=N, epochs=E or samples=S"):
        parse_budget(text)


def test_budget_with_a_steps_override_is_an_error():
    done = run_cli("compare", "--modalities", "sequence", "--objectives", "ce", "--out", "/nonexistent/x",
                   "--budget", "epochs=2", "sequence:train.steps=3")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --budget epochs=2 sets train.steps of every cell; drop the override "
                                   "'sequence:train.steps=3' (or drop --budget)")


def test_budget_prints_as_given():
    assert str(Budget("samples", 9600.0)) == "samples=9600" and str(parse_budget("epochs=2.5")) == "epochs=2.5"


RUN = [*TINY["sequence"], "data.sequence_builtin.train_per_class=3", "train.batch_size=8", "train.val_every=0",
       "train.progress=false", "eval.probe_epochs=5", "eval.svm_c_grid=[1.0]", "eval.label_fractions=[0.4, 1.0]"]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("noise") / "cmp"
    done = run_cli("compare", "--modalities", "sequence", "--objectives", "ce", "--seeds", "0", "1", "--out", out,
                   "--budget", "epochs=1.5", *RUN)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out, done


def test_a_two_seed_compare_shows_intervals_from_its_cells(two_seeds):
    out, done = two_seeds
    # 3 series per class x 8 classes = 24 train items, batch 8: 1.5 epochs = ceil(36 / 8) = 5 steps.
    assert "sequence/ce: --budget epochs=1.5: 5 steps of 8 (24 train items)" in done.stdout
    results = [json.loads((out / f"sequence-ce-seed{s}" / "results.json").read_text()) for s in (0, 1)]
    for seed, r in enumerate(results):
        saved = yaml.safe_load((out / f"sequence-ce-seed{seed}" / "config.yaml").read_text())
        assert r["steps"] == saved["train"]["steps"] == 5 and r["epochs"] == pytest.approx(5 * 8 / 24, abs=1e-3)
    text = (out / "comparison.md").read_text()
    for key in ("linear_probe_acc", "linear_probe_acc@40%", "linear_probe_acc@100%"):
        for part in ("metrics", "floor"):
            x = np.array([r[part][key] for r in results])
            half = T_975[1] * x.std(ddof=1) / np.sqrt(2)
            shown = f"{x.mean():.3f} [{x.mean() - half:.3f}, {x.mean() + half:.3f}]"
            assert shown in text, (key, part, shown)
    assert "| modality | objective | 40% | floor | 100% | floor |" in text
    assert "| sequence | ce | " in text.split("40% | floor")[1]
    with open(out / "comparison.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert {"linear_probe_acc@40%_ci_low", "floor_linear_probe_acc@40%_ci_high"} <= set(row)


def test_the_fraction_figure_has_the_documented_size_and_the_objective_colour_on_its_points(two_seeds):
    from comparison.fraction_figure import COLOURS, INSET, LEFT, LEGEND, PANEL_H, PANEL_W, PLOT_H, PLOT_W, TOP

    out, _ = two_seeds
    image = Image.open(out / "comparison_fractions.png").convert("RGB")
    assert image.size == (LEFT + PANEL_W, TOP + PANEL_H + LEGEND)  # one modality, one metric, one legend row
    results = [json.loads((out / f"sequence-ce-seed{s}" / "results.json").read_text()) for s in (0, 1)]
    mean = np.mean([r["metrics"]["linear_probe_acc@100%"] for r in results])
    # The 100% point sits INSET pixels left of the plot area's right edge, at height 1 - mean; the
    # 40% point log(0.4 / 0.4) = 0 of the way, INSET pixels right of the left edge.
    x, y = LEFT + PLOT_W - INSET, TOP + PLOT_H * (1 - mean)
    assert image.getpixel((round(x), round(y))) == COLOURS[0]
    mean = np.mean([r["metrics"]["linear_probe_acc@40%"] for r in results])
    assert image.getpixel((LEFT + INSET, round(TOP + PLOT_H * (1 - mean)))) == COLOURS[0]


def test_the_plan_gives_each_objective_the_steps_of_its_own_batch(tmp_path):
    from comparison.command import parse_args, plan

    # 16 train series (2 per class); 48 samples = 6 steps of 8 (ce) or 12 steps of 4 (supcon).
    args = parse_args(["--modalities", "sequence", "--objectives", "ce", "supcon", "--seeds", "0", "1",
                       "--out", str(tmp_path), "--budget", "samples=48", *TINY["sequence"], "train.batch_size=8",
                       "supcon:train.batch_size=4"])
    pairs = plan(args)
    assert [(p.objective, p.budget_note) for p in pairs] == [("ce", "6 steps of 8 (16 train items)"),
                                                            ("supcon", "12 steps of 4 (16 train items)")]
    for p, steps in zip(pairs, (6, 12)):
        for cell in p.cells:
            assert cell.overrides[-2:] == [f"train.steps={steps}", f"seed={cell.seed}"]
