"""Configuration: YAML files merged in a fixed order, then validated.

Order (later wins): ``configs/base.yaml`` <- ``configs/modalities/<m>.yaml``
<- ``configs/objectives/<o>.yaml`` <- the modality file's
``with_objective.<o>`` (a partial config) <- an optional experiment file (``--config FILE``)
<- ``key=value`` overrides from the command line.

The keys of base, modality and objective files form the schema: the
experiment file and overrides may only set keys that exist there, with a value
of the same type (an int is accepted where a float is expected, a number where
the default is ``auto``; a key whose default is ``null`` accepts anything). Override values are parsed as Python
literals, so ``optim.lr=1e-3`` is a float and ``data.path=clips/`` a string.
The result is a plain nested dict; nothing reads a global config later.
"""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import yaml

from core.errors import UserError
from core.registry import closest

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class ConfigError(UserError, ValueError):
    """A config file, key or value that cannot be used."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> dict:
    """Read one YAML mapping; an empty file is an empty dict.

    Raises:
        ConfigError: missing file, invalid YAML (a key repeated in one mapping included), or a top
            level that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _check_type(key: str, default, value, source: str) -> None:
    if default is None or value is None:
        return
    if default == "auto" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return  # 'auto' keys (data.medical_manifest.spatial_dims) also take the number they would pick
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{source}: '{key}' expects {type(default).__name__} (default {default!r}), got {type(value).__name__} {value!r}")


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def apply(tree: dict, updates: dict, source: str) -> None:
    """Set dotted keys of ``updates`` in ``tree`` after checking name and type.

    Raises:
        ConfigError: a key the schema does not know (naming the closest known
        key) or a value of the wrong type.
    """
    schema = flatten(tree)
    sections = {k.rsplit(".", i)[0] for k in schema for i in range(1, k.count(".") + 1)}
    for key, value in flatten(updates).items():
        if key not in schema:
            if key in sections and isinstance(value, dict) and not value:
                continue  # an empty section in a file changes nothing
            raise ConfigError(f"{source}: unknown config key '{key}'{closest(key, schema)}")
        _check_type(key, schema[key], value, source)
        _set(tree, key, value)


def parse_override(text: str) -> tuple[str, object]:
    """'optim.lr=1e-3' -> ('optim.lr', 0.001); values are Python literals, else strings.

    Raises:
        ConfigError: the text has no '='.
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.steps=100")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if raw in ("null", "none", "None"):
        value = None
    elif raw in ("true", "false"):
        value = raw == "true"
    return key.strip(), value


def load_config(modality: str, objective: str, experiment: str | None = None, overrides=(),
                config_dir: Path = CONFIG_DIR) -> dict:
    """Merge the YAML layers and overrides into one validated nested dict.

    Raises:
        ConfigError: missing file, unknown key, wrong type or malformed override.
    """
    cfg = load_yaml(config_dir / "base.yaml")
    for layer in (config_dir / "modalities" / f"{modality}.yaml", config_dir / "objectives" / f"{objective}.yaml"):
        if layer.is_file():
            data = load_yaml(layer)
            cfg = _deep_merge(cfg, data)
            settle_budget(cfg, flatten(data), f"config file '{layer}'")
    # A modality may tune itself and an objective for each other (medical CPC: patch-grid embeddings, 3 rows ahead).
    pair_settings = (cfg.pop("with_objective", None) or {}).get(objective)
    if pair_settings:
        apply_layer(cfg, pair_settings, f"with_objective.{objective} of modality '{modality}'")
    if experiment:
        apply_layer(cfg, load_yaml(Path(experiment)), f"config file '{experiment}'")
    apply_overrides(cfg, overrides)
    cfg["modality"], cfg["objective"]["name"] = modality, objective
    return cfg


def load_run_config(config_file: Path, overrides=(), config_dir: Path = CONFIG_DIR) -> dict:
    """A run's saved ``config.yaml`` read back (what ``--resume`` and ``run.py eval`` start from):
    the schema of its modality and objective <- the file, as it is (it holds the budget the run
    worked out, e.g. ``train.steps`` from ``train.epochs``) <- ``overrides``.

    Raises:
        ConfigError: the file is unreadable or not a run config (no modality or objective), or it
            or an override sets an unknown key or a value of the wrong type.
    """
    saved = load_yaml(Path(config_file))
    if not isinstance(saved.get("objective"), dict) or "name" not in saved["objective"] or "modality" not in saved:
        raise ConfigError(f"'{config_file}' is not a run config (no modality or objective name)")
    cfg = load_config(saved["modality"], saved["objective"]["name"], config_dir=config_dir)
    apply(cfg, saved, f"'{config_file}'")
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(cfg: dict, overrides) -> None:
    """Apply ``key=value`` strings to ``cfg`` in order (see ``apply_layer`` for the checks)."""
    for text in overrides:
        key, value = parse_override(text)
        tree: dict = {}
        _set(tree, key, value)
        apply_layer(cfg, tree, f"override '{text}'")


def apply_layer(tree: dict, updates: dict, source: str) -> None:
    """``apply`` one layer of settings, then ``settle_budget`` for what it set."""
    apply(tree, updates, source)
    settle_budget(tree, flatten(updates), source)


BUDGET_KEYS = ("train.steps", "train.epochs", "train.steps_by_size")


def settle_budget(cfg: dict, layer: dict, source: str) -> None:
    """Exactly one of ``train.steps``, ``train.epochs`` and ``train.steps_by_size`` is set: a layer
    that sets one clears the others.

    ``layer`` is the flattened layer just applied.

    Raises:
        ConfigError: the layer sets more than one.
    """
    given = [k for k in BUDGET_KEYS if layer.get(k) is not None]
    if len(given) > 1:
        raise ConfigError(f"{source}: sets {'both ' if len(given) == 2 else ''}{' and '.join(given)}; set one of "
                          f"{', '.join(BUDGET_KEYS)} (epochs: "
                          "steps = ceil(epochs x train items / global batch))")
    if given:
        for other in BUDGET_KEYS:
            if other != given[0]:
                cfg["train"][other.split(".")[1]] = None


def _deep_merge(base: dict, layer: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dump(cfg: dict) -> str:
    """The config as YAML text, keys in file order."""
    return yaml.safe_dump(cfg, sort_keys=False)
