"""``python run.py query RUN_DIR "a rising chirp over heavy noise"``: the items nearest a sentence.

For paired runs (clap, convirt, siglip): the sentence goes through the run's tokenizer, text
encoder and text head; the items (the run's own split, default test, or ``--data PATH`` in a
loader's layout, read as ``run.py embed`` reads it) through ``inference.embed``; the ``--k`` items
of highest cosine similarity in the joint space are printed as a table (``inference/query.py``).
A run of another objective is one sentence and exit status 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core import config as config_lib
from core.errors import UserError, report
from inference.datasets import SPLITS, data_datasets, run_datasets, splits_of
from inference.embed import embed_datasets
from inference.load import load_run
from inference.query import Hit, check_has_text, query_run, text_objectives


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py query", description=f"The items of a paired run ({', '.join(text_objectives())}) nearest a "
                                          "sentence in its joint space: rank, score (cosine similarity), label, "
                                          "split and id.",
        epilog="Overrides set options of the loader --data picks, e.g. data.audio_manifest.test_fraction=0.5; "
               "the options that make the model's input are the run's (as for run.py embed).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.yaml, checkpoints/last.pt) or "
                                                           "an export folder (run.py export)")
    parser.add_argument("text", metavar="TEXT", help='the sentence to search for, e.g. "a rising chirp"')
    parser.add_argument("--data", metavar="PATH", help="search these files (a loader's layout, README 'Your data'); "
                                                       "default: the run's own data")
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="test", help="which split to search "
                                                                                  "(default test)")
    parser.add_argument("--k", type=int, default=10, metavar="K", help="items to show (default 10)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the run's device setting")
    parser.add_argument("--batch-size", type=int, metavar="N", help="items per batch (default: the run's "
                                                                     "eval.batch_size)")
    parser.add_argument("overrides", nargs="*", metavar="data.key=value", help="with --data: data.* overrides")
    return parser.parse_intermixed_args(argv)


def check_folder_has_text(run_dir: Path) -> None:
    """Refuse a run without a text side from its config.yaml alone, before any model or data is built
    (a folder without config.yaml is left to ``load_run``'s error).

    Raises:
        UserError: the run's objective needs no text (names it and the objectives that do).
    """
    if (run_dir / "config.yaml").is_file():
        check_has_text(config_lib.load_run_config(run_dir / "config.yaml")["objective"]["name"])


def query_command(args) -> list[Hit]:
    """The rows to print.

    Raises:
        UserError: a run without text, a bad folder, option or data, an empty sentence.
    """
    if args.overrides and not args.data:
        raise UserError("data.* overrides apply to --data PATH only")
    if args.k < 1:
        raise UserError(f"--k must be at least 1, got {args.k}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_folder_has_text(Path(args.run_dir))
    run = load_run(args.run_dir, args.device)
    splits = splits_of(args.split)
    if args.data:
        name, datasets = data_datasets(run, args.data, splits, args.overrides)
    else:
        name, datasets = run.config["data"]["name"], run_datasets(run, splits)
    arrays = embed_datasets(run, datasets, name, args.batch_size or run.config["eval"]["batch_size"])
    return query_run(run, args.text, arrays, args.k)


def table(hits: list[Hit]) -> list[str]:
    """Aligned lines: a header, then one line per hit (label '-' when unlabelled, score to 3 decimals)."""
    rows = [["rank", "score", "label", "split", "id"]]
    rows += [[str(h.rank), f"{h.score:.3f}", h.label or "-", h.split, h.id] for h in hits]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = (True, True, False, False, False)  # numbers right-aligned
    return ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()
            for row in rows]


def main(argv) -> int:
    args = parse_args(argv)
    try:
        hits = query_command(args)
    except UserError as err:
        return report(err)
    print(f"{args.run_dir}: the {len(hits)} items nearest \"{args.text}\" (cosine similarity in the joint space)")
    for line in table(hits):
        print(line)
    return 0
