"""Built-in audio: a deterministic set of labelled, captioned sound events.

Eight event classes that differ in spectral *and* temporal structure (a
random-init encoder that only pools band energies cannot tell a rising chirp
from a falling one, or a steady tone from a wavering one):

    tone, rising chirp, falling chirp, harmonic stack, noise burst,
    amplitude-modulated tone, click train, vibrato tone

Each clip draws a pitch (log-uniform), an event duration and onset, a loudness
and a background-noise SNR; its caption is written from those attributes with
varied phrasing. Everything is a function of (seed, split), so two runs with
the same seed see identical data. About a second per thousand one-second clips.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("tone", "rising chirp", "falling chirp", "harmonic stack", "noise burst",
           "pulsing tone", "click train", "vibrato tone")
SPLITS = {"train": 0, "val": 1, "test": 2}

_NOUNS = {
    "tone": ["a steady tone", "a pure tone", "a sustained sine tone"],
    "rising chirp": ["a rising chirp", "an upward sweep", "a tone sweeping upward"],
    "falling chirp": ["a falling chirp", "a downward sweep", "a tone sweeping downward"],
    "harmonic stack": ["a harmonic sound", "a buzzy tone rich in harmonics", "a stack of harmonics"],
    "noise burst": ["a burst of noise", "a hiss", "a short noise burst"],
    "pulsing tone": ["a pulsing tone", "a tone that throbs in loudness", "an amplitude-modulated tone"],
    "click train": ["a train of clicks", "rapid clicking", "a series of clicks"],
    "vibrato tone": ["a wavering tone", "a tone with vibrato", "a warbling tone"],
}


def _pitch_word(hz: float) -> str:
    return "low" if hz < 350 else "mid-pitched" if hz < 1000 else "high"


def _loudness_word(db: float) -> str:
    return "quiet" if db < -14 else "moderately loud" if db < -7 else "loud"


def _noise_phrase(snr_db: float) -> str:
    return "over heavy background noise" if snr_db < 10 else \
        "with some background noise" if snr_db < 20 else "in near silence"


def _caption(rng: np.random.Generator, kind: str, a: dict) -> str:
    noun = rng.choice(_NOUNS[kind])
    pitch = "" if kind in ("noise burst", "click train") else f"{_pitch_word(a['pitch_hz'])} "
    when = ["early in the clip", "in the middle of the clip", "late in the clip"][min(2, int(3 * a["center"]))]
    templates = [
        "{noun_cap} lasting {dur:.1f} seconds, {loud}, {when}, {noise}",
        "{noun_cap}, {loud} and {pitch_word}, {noise}, heard {when}",
        "{dur:.1f} seconds of {pitch}{noun_bare}, {loud}, {noise}",
    ]
    template = templates[rng.integers(len(templates))]
    noun_bare = noun.split(" ", 1)[1]
    text = template.format(loud=_loudness_word(a["loudness_db"]), pitch=pitch, noun=noun, noun_bare=noun_bare,
                           noun_cap=noun[0].upper() + noun[1:], dur=a["duration_s"], when=when,
                           noise=_noise_phrase(a["snr_db"]),
                           pitch_word=pitch.strip() or "broadband")
    text = text[0].upper() + text[1:]
    return " ".join(text.split()).replace(" ,", ",") + "."


def _event(rng: np.random.Generator, kind: str, t: np.ndarray, f0: float) -> np.ndarray:
    """One unit-peak event of ``kind`` over local time ``t`` (seconds)."""
    dur = t[-1] + (t[1] - t[0])
    if kind == "tone":
        return np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    if kind in ("rising chirp", "falling chirp"):
        ratio = rng.uniform(2.0, 4.0)
        start, end = (f0, f0 * ratio) if kind == "rising chirp" else (f0 * ratio, f0)
        k = np.log(end / start) / dur  # exponential sweep
        return np.sin(2 * np.pi * start * (np.exp(k * t) - 1) / k)
    if kind == "harmonic stack":
        n = rng.integers(4, 9)
        return sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28)) / h for h in range(1, n + 1))
    if kind == "noise burst":
        noise = rng.standard_normal(len(t))
        width = rng.integers(2, 12)  # a random low-pass colours the noise
        return np.convolve(noise, np.ones(width) / width, mode="same")
    if kind == "pulsing tone":
        rate = rng.uniform(4.0, 12.0)
        return np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    if kind == "click train":
        rate = rng.uniform(8.0, 40.0)
        clicks = np.zeros_like(t)
        clicks[(np.arange(0, dur, 1.0 / rate) / (t[1] - t[0])).astype(int)] = 1.0
        ring = np.exp(-np.arange(40) / 6.0) * np.sin(2 * np.pi * 0.2 * np.arange(40))
        return np.convolve(clicks, ring, mode="same")
    if kind == "vibrato tone":
        rate, depth = rng.uniform(4.0, 8.0), rng.uniform(0.03, 0.08)
        phase = 2 * np.pi * f0 * (t - depth / (2 * np.pi * rate) * np.cos(2 * np.pi * rate * t))
        return np.sin(phase)
    raise ValueError(f"unknown event kind '{kind}'")


def make_clip(rng: np.random.Generator, label: int, sample_rate: int, n_samples: int):
    """One clip (float32, shape (n_samples,)), its attributes and its caption."""
    kind = CLASSES[label]
    clip_s = n_samples / sample_rate
    duration = rng.uniform(0.3, 0.9) * clip_s
    onset = rng.uniform(0.0, clip_s - duration)
    attrs = {"pitch_hz": float(np.exp(rng.uniform(np.log(150), np.log(2500)))),
             "duration_s": duration, "onset_s": onset, "center": (onset + duration / 2) / clip_s,
             "loudness_db": rng.uniform(-20.0, 0.0), "snr_db": rng.uniform(5.0, 30.0)}
    n_event = int(duration * sample_rate)
    t = np.arange(n_event) / sample_rate
    event = _event(rng, kind, t, attrs["pitch_hz"])
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps, no clicks at the edges
    event = event * fade / (np.abs(event).max() + 1e-8)
    gain = 10 ** (attrs["loudness_db"] / 20)
    clip = np.zeros(n_samples)
    start = int(onset * sample_rate)
    clip[start:start + n_event] = gain * event
    event_rms = gain * np.sqrt(np.mean(event ** 2))
    clip += rng.standard_normal(n_samples) * event_rms * 10 ** (-attrs["snr_db"] / 20)
    return clip.astype(np.float32), attrs, _caption(rng, kind, attrs)


def generate(split: str, seed: int, per_class: int, sample_rate: int = 16000, n_samples: int = 16000):
    """Clips of one split, balanced over classes, in a seeded shuffled order.

    Returns:
        waves (N, n_samples) float32, labels (N,) int64, captions list[str],
        attributes dict of name -> (N,) float64, N = per_class * len(CLASSES).

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS[split], 7919])
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class))
    waves = np.empty((len(labels), n_samples), np.float32)
    captions, attrs = [], []
    for i, label in enumerate(labels):
        waves[i], a, caption = make_clip(rng, int(label), sample_rate, n_samples)
        captions.append(caption)
        attrs.append(a)
    attributes = {k: np.array([a[k] for a in attrs]) for k in attrs[0]}
    return waves, labels.astype(np.int64), captions, attributes
