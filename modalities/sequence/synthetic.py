"""Built-in sequences: a deterministic set of labelled, captioned multivariate series.

Eight shape families; a class is the *shape* of a latent source, never its scale:

    sine, square, sawtooth, damped oscillation, trend, regime change, spikes, random walk

Every series draws an amplitude (log-uniform over a 16x range), an offset, a
nuisance linear trend, a white-noise level and a slow AR(1) nuisance per
channel; the latent source is mixed into each channel with a random gain,
sign and lag. Scale, offset and noise therefore carry no class information,
so pooled statistics of a random network do not solve the task, while the
shape over time does. Captions are written from the drawn attributes with
varied phrasing. Everything is a function of (seed, split).
"""
from __future__ import annotations

import numpy as np

CLASSES = ("sine", "square", "sawtooth", "damped oscillation", "trend", "regime change", "spikes", "random walk")
SPLITS = {"train": 0, "val": 1, "test": 2}
PERIODIC = ("sine", "square", "sawtooth", "damped oscillation", "regime change")
MAX_LAG = 6  # samples of lag between channels

# Attributes of every item; NaN where one does not apply to the class
# (frequency of a random walk, change point of a sine, ...).
ATTRIBUTES = ("amplitude", "offset", "noise", "trend", "frequency", "phase", "decay", "change_point", "n_spikes")

_NOUNS = {
    "sine": ["a sine wave", "a sinusoid", "a smooth oscillation"],
    "square": ["a square wave", "a square-shaped oscillation", "an on-off square signal"],
    "sawtooth": ["a sawtooth wave", "a sawtooth oscillation", "a ramp-and-reset sawtooth"],
    "damped oscillation": ["a damped oscillation", "a decaying oscillation", "a ringing oscillation"],
    "trend": ["a noisy trend", "a drifting signal", "a trending series"],
    "regime change": ["an oscillation with a regime change", "a regime-switching oscillation",
                      "an oscillation in two regimes"],
    "spikes": ["a spiky signal", "a spike train", "a quiet baseline"],
    "random walk": ["a random walk", "a wandering random walk", "a meandering series"],
}


def speed_word(cycles: float) -> str:
    """'slow' / 'moderate' / 'fast' for a frequency in cycles per window."""
    return "slow" if cycles < 3.0 else "moderate" if cycles < 5.0 else "fast"


def amplitude_word(amplitude: float) -> str:
    return "low-amplitude" if amplitude < 0.6 else "medium-amplitude" if amplitude < 1.6 else "high-amplitude"


def noise_phrase(noise: float) -> str:
    return "almost no noise" if noise < 0.15 else "mild noise" if noise < 0.35 else "heavy noise"


def trend_phrase(trend: float) -> str:
    """Trend in amplitude units per window -> a phrase ('' when flat)."""
    if abs(trend) < 0.4:
        return ""
    return "a rising trend" if trend > 0 else "a falling trend"


def _when(fraction: float) -> str:
    return "early on" if fraction < 0.4 else "about halfway through" if fraction < 0.6 else "late in the series"


def _smooth_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance AR(1) noise with a random correlation in [0.85, 0.98]."""
    rho = rng.uniform(0.85, 0.98)
    e = rng.standard_normal(n) * np.sqrt(1 - rho ** 2)
    out = np.empty(n)
    out[0] = rng.standard_normal()
    for i in range(1, n):
        out[i] = rho * out[i - 1] + e[i]
    return out


def _shape(rng: np.random.Generator, kind: str, u: np.ndarray, a: dict) -> np.ndarray:
    """The unit-scale latent source of ``kind`` over window time ``u`` (1.0 = one window)."""
    f, phase = a["frequency"], a["phase"]
    arg = 2 * np.pi * f * u + phase
    if kind == "sine":
        return np.sin(arg)
    if kind == "square":
        return np.tanh(rng.uniform(6, 20) * np.sin(arg))
    if kind == "sawtooth":
        return 2 * ((arg / (2 * np.pi)) % 1.0) - 1
    if kind == "damped oscillation":
        onset = a["change_point"]
        envelope = np.where(u >= onset, np.exp(-a["decay"] * np.clip(u - onset, 0, None)), 0.0)
        return 1.5 * envelope * np.sin(2 * np.pi * f * (u - onset))
    if kind == "trend":
        return 0.2 * _smooth_noise(rng, len(u))  # the trend itself is added as a['trend']
    if kind == "regime change":
        ratio = a["ratio"]
        before = np.sin(arg)
        shift = 2 * np.pi * f * a["change_point"] * (1 - ratio)  # keeps the phase continuous
        after = np.sin(2 * np.pi * f * ratio * u + phase + shift) + a["jump"]
        return np.where(u < a["change_point"], before, after)
    if kind == "spikes":
        out = 0.2 * _smooth_noise(rng, len(u))
        idx = np.arange(len(u), dtype=float)
        width = rng.uniform(0.6, 1.5)
        for centre in rng.uniform(MAX_LAG, len(u), int(a["n_spikes"])):
            out += rng.uniform(2.0, 4.0) * np.exp(-0.5 * ((idx - centre) / width) ** 2)
        return out
    if kind == "random walk":
        walk = np.cumsum(rng.standard_normal(len(u)))
        walk = walk - np.polyval(np.polyfit(u, walk, 1), u)  # drift would mimic the trend class
        return walk / (walk.std() + 1e-8)
    raise ValueError(f"unknown shape '{kind}'")


def _attributes(rng: np.random.Generator, kind: str) -> dict:
    nan = float("nan")
    a = {"amplitude": float(np.exp(rng.uniform(np.log(0.25), np.log(4.0)))), "offset": rng.uniform(-3, 3),
         "noise": rng.uniform(0.05, 0.5), "trend": rng.uniform(-1.0, 1.0), "frequency": nan, "phase": nan,
         "decay": nan, "change_point": nan, "n_spikes": nan}
    if kind in PERIODIC:
        a["frequency"] = float(np.exp(rng.uniform(np.log(1.5), np.log(8.0))))
        a["phase"] = rng.uniform(0, 2 * np.pi)
    if kind == "damped oscillation":
        a["frequency"] = float(np.exp(rng.uniform(np.log(3.0), np.log(10.0))))
        a["decay"], a["change_point"] = rng.uniform(2.0, 6.0), rng.uniform(0.0, 0.3)
    if kind == "trend":
        a["trend"] = rng.choice([-1, 1]) * rng.uniform(2.0, 4.0)
    if kind == "regime change":
        a["frequency"] = float(np.exp(rng.uniform(np.log(1.5), np.log(4.0))))
        a["change_point"] = rng.uniform(0.3, 0.7)
        a["ratio"] = rng.uniform(2.0, 3.5) ** rng.choice([-1, 1])  # speeds up or slows down
        a["jump"] = rng.choice([-1, 1]) * rng.uniform(1.0, 2.5)
    if kind == "spikes":
        a["n_spikes"] = float(rng.integers(3, 9))
    return a


def caption(rng: np.random.Generator, kind: str, a: dict, channels: int) -> str:
    """A one-sentence description of a series from its attributes."""
    noun = str(rng.choice(_NOUNS[kind]))
    adjectives = [amplitude_word(a["amplitude"])]
    if kind in ("sine", "square", "sawtooth", "damped oscillation"):
        adjectives.insert(0, speed_word(a["frequency"]))
    rest = noun.split(" ", 1)[1]
    phrase = f"{'a' if adjectives[0][0] not in 'aeiou' else 'an'} {', '.join(adjectives)} {rest}"
    details = []
    if kind == "damped oscillation":
        details.append(f"that {'dies out quickly' if a['decay'] > 4 else 'decays gradually'}")
    if kind == "regime change":
        change = "speeds up" if a["ratio"] > 1 else "slows down"
        level = "jumps to a higher level" if a["jump"] > 0 else "drops to a lower level"
        details.append(f"that {change} and {level} {_when(a['change_point'])}")
    if kind == "spikes":
        details.append(f"with {int(a['n_spikes'])} sharp spikes")
    extras = [p for p in (trend_phrase(a["trend"]), noise_phrase(a["noise"])) if p]
    templates = ["{p} {d}, with {e}", "{P} across {c} channels {d}, showing {e}",
                 "a {c}-channel recording of {p} {d}; it has {e}"]
    template = templates[rng.integers(len(templates))]
    text = template.format(p=phrase, P=phrase, d=" ".join(details), c=channels, e=" and ".join(extras))
    text = " ".join(text.split()).replace(" ,", ",").replace(" ;", ";")
    return text[0].upper() + text[1:] + "."


def make_series(rng: np.random.Generator, label: int, channels: int, length: int):
    """One series (float32 (channels, length)), its attributes and its caption."""
    kind = CLASSES[label]
    a = _attributes(rng, kind)
    u = (np.arange(length + MAX_LAG) - MAX_LAG) / length  # extended grid so channels can lag
    source = _shape(rng, kind, u, a)
    amp = a["amplitude"]
    x = np.empty((channels, length))
    t = np.arange(length) / length
    for c in range(channels):
        lag = 0 if c == 0 else int(rng.integers(0, MAX_LAG + 1))
        gain = rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0]) if c else 1.0
        chan = gain * source[MAX_LAG - lag:MAX_LAG - lag + length]
        chan = chan + rng.uniform(0.0, 0.25) * _smooth_noise(rng, length)  # slow nuisance, no class info
        chan = chan + a["trend"] * (t - 0.5) + rng.standard_normal(length) * a["noise"]
        x[c] = amp * chan + a["offset"] + rng.uniform(-0.5, 0.5) * amp
    text = caption(rng, kind, a, channels)
    return x.astype(np.float32), {k: float(a[k]) for k in ATTRIBUTES}, text


def generate(split: str, seed: int, per_class: int, channels: int = 3, length: int = 128):
    """Series of one split, balanced over classes, in a seeded shuffled order.

    Returns:
        x (N, channels, length) float32, labels (N,) int64, captions list[str],
        attributes dict of name -> (N,) float64 (NaN where not applicable),
        N = per_class * len(CLASSES).

    Raises:
        ValueError: unknown split, or a non-positive size.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")
    if per_class < 1 or channels < 1 or length < 16:
        raise ValueError(f"need per_class >= 1, channels >= 1 and length >= 16; got {per_class}, {channels}, {length}")
    rng = np.random.default_rng([seed, SPLITS[split], 104729])
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class))
    x = np.empty((len(labels), channels, length), np.float32)
    captions, attrs = [], []
    for i, label in enumerate(labels):
        x[i], a, text = make_series(rng, int(label), channels, length)
        captions.append(text)
        attrs.append(a)
    attributes = {k: np.array([a[k] for a in attrs]) for k in ATTRIBUTES}
    return x, labels.astype(np.int64), captions, attributes
