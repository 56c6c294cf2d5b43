"""Dev sets of real data, built from packages into a cache folder outside the repository.

    python benchmarks/dev_sets.py                          # every set into ~/.cache/contrastive-dev-sets
    python benchmarks/dev_sets.py --sets gm_notes --force  # rebuild one set
    python benchmarks/dev_sets.py --cache DIR              # or CONTRASTIVE_DEV_SETS=DIR

Sets (CACHE/<set>/, each finished by a ``.built`` marker holding its format version, ``VERSIONS``; a set
whose marker holds the current version is skipped unless ``--force``):

- ``ItalyPowerDemand`` (2 classes, length 24), ``ACSF1`` (10 classes, length 1460),
  ``PickupGestureWiimoteZ`` (10 classes, lengths 29-361): the copies of the UCR/UEA archive that
  ship inside the ``aeon`` package, official train/test splits, written twice:
  ``<set>/ucr/<set>_TRAIN.tsv`` and ``_TEST.tsv`` (label first, tab separated, unequal series
  NaN-padded to the longest) and ``<set>/uea/<set>_TRAIN.ts`` and ``_TEST.ts`` (aeon's files as they are).
- ``gm_notes``: single notes rendered by fluidsynth from the General MIDI sound font FluidR3_GM at 44.1 kHz,
  1.0 s clips (note-on 5 ms in; the project's loader center-crops longer clips to 1 s, cutting the attack),
  wav and flac mixed, in ``manifest.csv`` (path,label,caption,split).
  Label = GM family (8); per family 3 programs with 36 notes each (28 train, 8 test) and one
  program with 24 notes seen only in test: 672 train and 384 test clips. Test-only programs:
  electric grand piano, reed organ, electric guitar (clean), fretless bass, tremolo strings,
  brass section, clarinet, pan flute. Pitch, velocity (30-126) and held duration (0.25-1 s)
  are drawn per note, seeded, no (pitch, duration) twice per program, so no two captions are equal;
  captions read e.g. "a soft low C3 on a cello, held for one second".
- ``noto_glyphs`` (``dev_glyphs.py``): 64x64 grayscale PNGs of letters and digits of 8 Unicode blocks (label =
  the block's script as its Unicode names say it: latin, greek, cyrillic, ...)
  rendered with Pillow from the fonts of Debian's fonts-noto-core (4-16 fonts per block: sans, serif, display,
  naskh, kufi, looped; regular, bold, italic), size 30-46 px and offset +-4 px drawn per image; report = the
  lower-cased Unicode name and the face ("greek small letter alpha with tonos, serif bold"), every
  (character, font) at most once; a quarter of each block's characters only in test; 256 images per
  block, in ``manifest.csv`` (path,report,label,group,split) of the medical manifest layout; group = the
  character ("U+03B1"), so the loader carves val from train by whole characters and val, like test,
  holds characters training never saw.

Missing tools are installed first, announced in one line: apt fluidsynth, fluid-soundfont-gm, fonts-noto-core;
pip ``-r benchmarks/requirements.txt`` (aeon) into this interpreter, refused for the project's ``.venv``.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dev_glyphs import NOTO, build_glyphs

ROOT = Path(__file__).resolve().parents[1]
SERIES = ("ItalyPowerDemand", "ACSF1", "PickupGestureWiimoteZ")
SETS = SERIES + ("gm_notes", "noto_glyphs")
# a set's format version: a cached copy built at another version is rebuilt (noto_glyphs 2: labels latin, greek)
VERSIONS = {"noto_glyphs": 2}
SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RATE, CLIP_S, SLOT_S, LEAD_S = 44100, 1.0, 2.0, 0.005
# family: (lowest, highest MIDI note), train programs (0-based GM numbers and names), the test-only program
FAMILIES = {
    "piano": ((36, 96), [(0, "acoustic grand piano"), (1, "bright acoustic piano"), (4, "electric piano")],
              (2, "electric grand piano")),
    "organ": ((36, 84), [(16, "drawbar organ"), (17, "percussive organ"), (19, "church organ")], (20, "reed organ")),
    "guitar": ((40, 84), [(24, "nylon guitar"), (25, "steel guitar"), (26, "jazz guitar")],
               (27, "electric guitar")),
    "bass": ((28, 55), [(32, "acoustic bass"), (33, "finger bass"), (34, "picked bass")], (35, "fretless bass")),
    "strings": ((40, 84), [(40, "violin"), (41, "viola"), (42, "cello")], (44, "tremolo strings")),
    "brass": ((45, 80), [(56, "trumpet"), (57, "trombone"), (60, "french horn")], (61, "brass section")),
    "reed": ((50, 84), [(64, "soprano sax"), (65, "alto sax"), (68, "oboe")], (71, "clarinet")),
    "pipe": ((60, 96), [(72, "piccolo"), (73, "flute"), (74, "recorder")], (75, "pan flute")),
}
NOTES_TRAIN_PROGRAM, NOTES_TEST_IN_PROGRAM, NOTES_TEST_PROGRAM = 28, 8, 24
HELD = {0.25: "a quarter of a second", 0.5: "half a second", 0.75: "three quarters of a second", 1.0: "one second"}


def default_cache() -> Path:
    """``$CONTRASTIVE_DEV_SETS``, else ``~/.cache/contrastive-dev-sets``."""
    return Path(os.environ.get("CONTRASTIVE_DEV_SETS") or "~/.cache/contrastive-dev-sets").expanduser()


def ensure_installed(names) -> None:
    """Install the apt and pip packages the sets ``names`` need and lack, printing one line first.

    Raises:
        SystemExit: aeon is missing and this interpreter is the project's own .venv, or an install failed.
    """
    apt = [p for p, have, need in [
        ("fluidsynth", shutil.which("fluidsynth"), "gm_notes"), ("fluid-soundfont-gm", SF2.is_file(), "gm_notes"),
        ("fonts-noto-core", (NOTO / "NotoSans-Regular.ttf").is_file(), "noto_glyphs")] if need in names and not have]
    pip = any(n in SERIES for n in names) and importlib.util.find_spec("aeon") is None
    if pip and Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        sys.exit("error: aeon is missing, and installing it here would move the project's numpy; "
                 "use a separate venv (benchmarks/README.md: .venv-bench)")
    if not apt and not pip:
        return
    print("installing " + "; ".join([f"apt: {' '.join(apt)}"] * bool(apt) + [
        f"pip into {sys.prefix}: -r benchmarks/requirements.txt"] * pip), flush=True)
    if apt:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *apt], check=True, env=env)
    if pip:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "benchmarks/requirements.txt")],
                       check=True)


def build_series(name: str, out: Path) -> None:
    """``out/ucr`` and ``out/uea`` of one of aeon's bundled sets (official splits)."""
    from aeon.datasets import load_from_ts_file

    source = Path(importlib.util.find_spec("aeon").origin).parent / "datasets" / "data" / name
    for sub in ("ucr", "uea"):
        (out / sub).mkdir(parents=True)
    loaded = {part: load_from_ts_file(str(source / f"{name}_{part}.ts")) for part in ("TRAIN", "TEST")}
    longest = max(s.shape[-1] for x, _ in loaded.values() for s in x)
    for part, (x, y) in loaded.items():
        shutil.copyfile(source / f"{name}_{part}.ts", out / "uea" / f"{name}_{part}.ts")
        with open(out / "ucr" / f"{name}_{part}.tsv", "w") as f:
            for series, label in zip(x, y):
                values = np.full(longest, np.nan)
                values[:series.shape[-1]] = series[0]
                f.write("\t".join([str(label)] + [repr(float(v)) if np.isfinite(v) else "NaN" for v in values]) + "\n")


def smf(program: int, notes) -> bytes:
    """A format-0 Standard MIDI File: ``program`` on channel 0, then (onset s, held s, pitch, velocity) notes."""
    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.append(0x80 | (n & 0x7F))
        return bytes(reversed(out))
    ticks = 960  # per second: 480 per quarter note at the default 120 bpm
    events = sorted([(round(t * ticks), 1, bytes([0x90, p, v])) for t, _, p, v in notes]
                    + [(round((t + d) * ticks), 0, bytes([0x80, p, 0])) for t, d, p, _ in notes])
    track, now = bytearray(b"\x00" + bytes([0xC0, program])), 0
    for tick, _, message in events:
        track += vlq(tick - now) + message
        now = tick
    track += vlq(round(ticks * SLOT_S)) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def caption(instrument: str, pitch: int, velocity: int, held: float) -> str:
    """'a soft low C3 on a cello, held for one second' from the note's parameters."""
    loud = "soft" if velocity < 60 else "medium" if velocity < 95 else "loud"
    register = "low" if pitch < 48 else "middle" if pitch < 72 else "high"
    name = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][pitch % 12] + str(pitch // 12 - 1)
    article = "an" if instrument[0] in "aeiou" else "a"
    return f"a {loud} {register} {name} on {article} {instrument}, held for {HELD[held]}"


def build_notes(out: Path, seed: int = 0) -> None:
    """``out/manifest.csv`` and ``out/clips/`` (see the module docstring).

    Raises:
        RuntimeError: the sound font renders a drawn note silent (outside the instrument's key range).
    """
    import soundfile as sf

    rng = np.random.default_rng([seed, 4411])
    (out / "clips").mkdir(parents=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, ((low, high), seen, unseen) in FAMILIES.items():
            for (program, instrument), test_only in [(p, False) for p in seen] + [(unseen, True)]:
                n = NOTES_TEST_PROGRAM if test_only else NOTES_TRAIN_PROGRAM + NOTES_TEST_IN_PROGRAM
                combos = [(held, pitch) for pitch in range(low, high + 1) for held in HELD]
                notes = [(i * SLOT_S + 0.1, *combos[k], int(rng.integers(30, 127)))
                         for i, k in enumerate(rng.choice(len(combos), size=n, replace=False))]
                splits = ["test"] * n if test_only else list(rng.permutation(
                    ["train"] * NOTES_TRAIN_PROGRAM + ["test"] * NOTES_TEST_IN_PROGRAM))
                midi, wav = Path(tmp) / f"{program}.mid", Path(tmp) / f"{program}.wav"
                midi.write_bytes(smf(program, notes))
                subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-r", str(RATE),
                                "-F", str(wav), str(SF2), str(midi)], check=True, capture_output=True)
                audio, rate = sf.read(wav, dtype="float32", always_2d=True)
                for i, ((onset, held, pitch, velocity), split) in enumerate(zip(notes, splits)):
                    start = round((onset - LEAD_S) * rate)
                    clip = audio[start:start + round(CLIP_S * rate)]
                    if np.abs(clip).max() < 1e-3:
                        raise RuntimeError(f"{SF2.name} renders program {program} ({instrument}) silent at "
                                           f"MIDI note {pitch}: narrow the family's pitch range")
                    suffix = ".flac" if rng.random() < 0.5 else ".wav"
                    path = f"clips/{family}_{program:03d}_{i:02d}{suffix}"
                    sf.write(out / path, clip, rate, subtype="PCM_16")
                    rows.append([path, family, caption(instrument, pitch, velocity, held), split])
    with open(out / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "caption", "split"]] + rows)


def built_version(folder: Path) -> int | None:
    """The format version of the set built in ``folder``: None if unbuilt, 1 for a marker without one."""
    marker = folder / ".built"
    if not marker.is_file():
        return None
    first = marker.read_text().split("\n", 1)[0].split()
    return int(first[1]) if len(first) == 2 and first[0] == "version" else 1


def build(names=SETS, cache: Path | None = None, force: bool = False) -> dict[str, float]:
    """Build the sets ``names`` under ``cache`` (default ``default_cache()``); {set: build seconds, 0 if cached}.

    Raises:
        ValueError: an unknown set name.
    """
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise ValueError(f"unknown dev set(s) {', '.join(unknown)}; sets are {', '.join(SETS)}")
    cache = Path(cache or default_cache()).expanduser()
    todo = [n for n in names if force or built_version(cache / n) != VERSIONS.get(n, 1)]
    for name in (n for n in names if n not in todo):
        print(f"{name}: already built ({cache / name}; --force rebuilds)", flush=True)
    ensure_installed(todo)
    seconds = dict.fromkeys(names, 0.0)
    for name in todo:
        start, out = time.perf_counter(), cache / name
        shutil.rmtree(out, ignore_errors=True)
        if name in SERIES:
            build_series(name, out)
        else:
            (build_notes if name == "gm_notes" else build_glyphs)(out)
        seconds[name] = time.perf_counter() - start
        (out / ".built").write_text(f"version {VERSIONS.get(name, 1)}\nbuilt in {seconds[name]:.1f} s\n")
        print(f"built {name} in {seconds[name]:.1f} s: {out}", flush=True)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="sets to build (default all)")
    parser.add_argument("--cache", type=Path, help="cache folder (default $CONTRASTIVE_DEV_SETS or "
                        "~/.cache/contrastive-dev-sets)")
    parser.add_argument("--force", action="store_true", help="rebuild sets that are already built")
    args = parser.parse_args(argv)
    build(args.sets, args.cache, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
