"""benchmarks/verdict.py: issue 14's pass/fail line of a dev set, at and around each bar."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import verdict  # noqa: E402

SERIES_BASELINES = [{"name": "dtw_1nn", "acc": 0.70}, {"name": "minirocket", "acc": 0.80}]


def run(probe, svm, **extra):
    return {"metrics": {"linear_probe_acc": probe, "svm_acc": svm}, **extra}


def test_series_set_takes_the_best_label_free_score_and_both_bars():
    runs = {"simclr": run(0.70, 0.74), "byol": run(0.76, 0.60), "supcon": run(0.99, 0.99), "cpc": None}
    line, passed = verdict.set_verdict("S", "sequence", runs, SERIES_BASELINES)
    assert passed  # byol's 0.76 >= 0.70 and >= 0.80 - 0.05; supcon (labels) is not a candidate
    assert line == ("S: best label-free byol probe 0.760 SVM 0.600 vs dtw_1nn 0.700 (+0.060), "
                    "minirocket 0.800 (-0.040, needs >= -0.05): PASS")
    line, passed = verdict.set_verdict("S", "sequence", {"simclr": run(0.74, 0.20)}, SERIES_BASELINES)
    assert not passed and line.endswith("(-0.060, needs >= -0.05): FAIL")  # beats DTW, 0.06 short of MiniRocket
    _, passed = verdict.set_verdict("S", "sequence", {"simclr": run(0.69, 0.0)}, [{"name": "dtw_1nn", "acc": 0.70},
                                                                                  {"name": "minirocket", "acc": 0.70}])
    assert not passed  # within MiniRocket's gap but below DTW


def test_audio_set_needs_only_the_mfcc_baseline():
    line, passed = verdict.set_verdict("A", "audio", {"dino": run(0.5, 0.513)}, [{"name": "mfcc_logreg", "acc": 0.513}])
    assert passed and line == "A: best label-free dino probe 0.500 SVM 0.513 vs mfcc_logreg 0.513 (+0.000): PASS"
    line, passed = verdict.set_verdict("A", "audio", {"ce": run(0.9, 0.9)}, [{"name": "mfcc_logreg", "acc": 0.5}])
    assert not passed and line == "A: FAIL (no label-free run finished)"


def test_image_text_set_needs_every_paired_objective_over_both_bars():
    def paired(x2t, t2x, zero_shot):
        return {"metrics": {"retrieval_r1_x2t": x2t, "retrieval_r1_t2x": t2x, "zero_shot_acc": zero_shot},
                "eval_items": 200, "chance_acc": 0.1}

    good = paired(0.05, 0.06, 0.2)  # bars: R@1 10 / 200 = 0.05, zero-shot 2 x 0.1 = 0.2
    line, passed = verdict.set_verdict("G", "medical", {"clap": good, "simclr": run(0.1, 0.1)}, [])
    assert passed and line == "G: clap R@1 0.050/0.060 (needs 0.050), zero-shot 0.200 (needs 0.200): PASS"
    _, passed = verdict.set_verdict("G", "medical", {"clap": good, "siglip": paired(0.3, 0.049, 0.5)}, [])
    assert not passed  # siglip's text-to-image R@1 is under 10x chance
    _, passed = verdict.set_verdict("G", "medical", {"convirt": paired(0.3, 0.3, 0.19)}, [])
    assert not passed


def test_resamples_table_verdicts_each_resample_and_the_means(tmp_path):
    import json
    from types import SimpleNamespace

    import resamples

    # resample 1 fails (ts2vec's 0.74 is 0.06 under MiniRocket's 0.80), resample 2 passes (0.86 vs 0.84);
    # means: ts2vec probe (0.70 + 0.86) / 2 = 0.78, SVM (0.74 + 0.80) / 2 = 0.77; dtw 0.65, minirocket 0.82
    figures = {1: ({"ts2vec": run(0.70, 0.74), "simclr": run(0.60, 0.62)}, 0.60, 0.80),
               2: ({"ts2vec": run(0.86, 0.80), "simclr": None}, 0.70, 0.84)}
    for k, (runs, dtw, rocket) in figures.items():
        out = tmp_path / f"resample-{k}"
        for objective, results in runs.items():
            if results is not None:
                (out / f"S-{objective}").mkdir(parents=True)
                (out / f"S-{objective}" / "results.json").write_text(json.dumps(results))
        (out / "S-baselines-test-seed0-resample{}.json".format(k)).write_text(json.dumps(
            [{"name": "dtw_1nn", "acc": dtw}, {"name": "minirocket", "acc": rocket}]))
    args = SimpleNamespace(out=tmp_path, objectives=["simclr", "ts2vec"], resamples=2, seed=0)
    lines = resamples.set_table(args, "S").splitlines()
    assert lines[2] == "| S | 1 | 0.620 | 0.740 | 0.600 | 0.800 | FAIL |"
    assert lines[3] == "| S | 2 | failed | 0.860 | 0.700 | 0.840 | PASS |"
    assert lines[4] == ("| S | mean (probe / SVM) | 0.600 / 0.620 (1 of 2 finished) | 0.780 / 0.770 | 0.650 | 0.820 "
                        "| PASS |")
    assert lines[6] == ("S, mean of 2 resamples: best label-free ts2vec probe 0.780 SVM 0.770 vs dtw_1nn 0.650 "
                        "(+0.130), minirocket 0.820 (-0.040, needs >= -0.05): PASS")
    assert lines[7] == "resamples passing: 1 of 2"
