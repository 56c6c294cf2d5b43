"""``python run.py embed RUN_DIR``: embeddings of a run's splits, or of any data in a loader's layout.

RUN_DIR is a run folder or an export folder (``load_run``). Without ``--data`` the run's own
splits are rebuilt from its config (the built-in data, or the files it trained on); with
``--data PATH`` the modality's loader that recognizes PATH reads it (``inference/datasets.py``).
Items are embedded in batches on the run's device (``--device`` to change it), with a progress
line on stderr, and written as one ``.npz`` (its arrays: ``inference/embed.py``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UserError, report
from inference.datasets import SPLITS, data_datasets, run_datasets, splits_of
from inference.embed import embed_datasets, write_npz
from inference.load import load_run


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py embed", description="Embed a run's splits (or --data PATH) with its trained encoder; "
                                          "writes one .npz with embedding, joint (paired objectives), id, row, "
                                          "split, index, label and classes.",
        epilog="Overrides set options of the loader --data picks, e.g. data.audio_manifest.val_fraction=0.2; "
               "the options that make the model's input (sample rate, clip length, image size, channels, series "
               "length) are the run's.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.yaml, checkpoints/last.pt) or "
                                                           "an export folder (run.py export)")
    parser.add_argument("--data", metavar="PATH", help="files in a loader's layout (README, 'Your data'); "
                                                       "default: the run's own data")
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all", help="which split (default all)")
    parser.add_argument("--out", metavar="FILE", help="the .npz to write (default RUN_DIR/embeddings-<split>.npz, "
                                                      "with --data RUN_DIR/embeddings-<data name>-<split>.npz)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the run's device setting")
    parser.add_argument("--batch-size", type=int, metavar="N", help="items per batch (default: the run's "
                                                                     "eval.batch_size)")
    parser.add_argument("--skip-bad", action="store_true", help="with --data: leave unreadable files out "
                                                                "(counted) instead of stopping at the first")
    parser.add_argument("overrides", nargs="*", metavar="data.key=value", help="with --data: data.* overrides")
    return parser.parse_intermixed_args(argv)


def default_out(run_dir: Path, data: str | None, split: str) -> Path:
    name = f"embeddings-{Path(data).stem}-{split}" if data else f"embeddings-{split}"
    return run_dir / f"{name}.npz"


def skipped(datasets: dict) -> int:
    """Files the loaders left out (``skip_bad``): a count (audio) or a list (images) per split."""
    counts = [getattr(d, "skipped", 0) for d in datasets.values()]
    return sum(c if isinstance(c, int) else len(c) for c in counts)


def embed_command(args) -> tuple[Path, dict, int]:
    """(the .npz written, its arrays, files skipped).

    Raises:
        UserError: a bad folder, option or data (the loader's errors name the file and row).
    """
    if (args.overrides or args.skip_bad) and not args.data:
        raise UserError("data.* overrides and --skip-bad apply to --data PATH only")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    run = load_run(args.run_dir, args.device)
    splits = splits_of(args.split)
    if args.data:
        name, datasets = data_datasets(run, args.data, splits, args.overrides, args.skip_bad)
    else:
        name, datasets = run.config["data"]["name"], run_datasets(run, splits)
    arrays = embed_datasets(run, datasets, name, args.batch_size or run.config["eval"]["batch_size"])
    out = write_npz(arrays, Path(args.out) if args.out else default_out(Path(args.run_dir), args.data, args.split))
    return out, arrays, skipped(datasets)


def main(argv) -> int:
    args = parse_args(argv)
    try:
        out, arrays, n_skipped = embed_command(args)
    except UserError as err:
        return report(err)
    splits, counts = sorted(set(arrays["split"]), key=[*SPLITS].index), []
    for split in splits:
        counts.append(f"{split} {int((arrays['split'] == split).sum())}")
    joint = f", joint {arrays['joint'].shape[1]}" if "joint" in arrays else ""
    left = f"; skipped {n_skipped} unreadable file{'s' if n_skipped > 1 else ''}" if n_skipped else ""
    print(f"{out}: {len(arrays['id'])} items ({', '.join(counts)}), embedding {arrays['embedding'].shape[1]}"
          f"{joint}{left}")
    return 0
