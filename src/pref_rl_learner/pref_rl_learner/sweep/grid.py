"""Sweep files: a JSON grid over :class:`~pref_rl_learner.pebble.config.TrainConfig` fields.

A sweep file names a ``base`` train config and the values to try::

    {
      "name": "lr_budget",
      "base": "../pebble_point_mass.yaml",
      "grid": {"reward_training.lr": [0.0003, 0.001]},
      "paired_keys": [{"schedule.total_budget": [50, 100],
                       "schedule.queries_per_session": [5, 10]}],
      "seeds": 3
    }

``base`` is relative to the sweep file. ``grid`` maps dotted keys (nested fields such as
``reward_training.lr``) to lists; every combination is run. Each group of ``paired_keys``
maps keys to lists of one common length that vary together (the i-th values go together,
like ``zip``). ``seeds`` is a list of seeds or a count ``n`` (seeds 0..n-1); ``name`` (default:
the file name) and ``description`` (free text) are optional. The runs are
``product(grid) × product(paired groups) × seeds`` in that order (seeds innermost), each
with a readable unique name built from the values that vary (a paired group is named by its
first key alone while that keeps the names unique).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError

SWEEP_KEYS = ('name', 'description', 'base', 'grid', 'paired_keys', 'seeds')
"""Top-level keys of a sweep file."""


class SweepError(PrefRLError, ValueError):
    """A sweep file is malformed, or one of its runs has a bad config (the run is named)."""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    name: str
    """Sweep name (the file's ``name``, else the file name without ``.json``)."""
    base: Path
    """Absolute path of the base train config (YAML)."""
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    """(dotted key, values) in file order; every combination is run."""
    paired: tuple[tuple[tuple[str, tuple[Any, ...]], ...], ...]
    """Groups of (dotted key, values); the values of a group have one length and vary
    together."""
    seeds: tuple[int, ...]
    """Seeds each configuration runs with (innermost loop)."""
    description: str = ''
    """Free text from the file."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: a base config plus overrides."""

    index: int
    """Position in the expansion order (0-based)."""
    name: str
    """Readable unique name: the run's directory name under the sweep's output."""
    overrides: Mapping[str, Any]
    """Dotted key -> value applied to the base config, ``seed`` included."""

    @property
    def seed(self) -> int:
        """The run's seed."""
        return int(self.overrides['seed'])


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (structure, keys against TrainConfig, list lengths).

    Raises:
        SweepError: naming the file and what is wrong.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise SweepError(f'{path}: cannot read sweep file: {err}') from err
    except json.JSONDecodeError as err:
        raise SweepError(f'{path}: not valid JSON: {err}') from err
    try:
        return parse_sweep(raw, path.parent, default_name=path.stem)
    except SweepError as err:
        raise SweepError(f'{path}: {err}') from None


def parse_sweep(raw: Any, root: Path, default_name: str = 'sweep') -> SweepSpec:
    """Build a :class:`SweepSpec` from a loaded JSON mapping; ``base`` is relative to
    ``root``."""
    if not isinstance(raw, dict):
        raise SweepError('a sweep file must hold a JSON object')
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise SweepError(f"unknown key(s) {', '.join(unknown)} (valid: {', '.join(SWEEP_KEYS)})")
    if 'base' not in raw:
        raise SweepError("'base' (path of the train config the sweep varies) is required")
    if not isinstance(raw['base'], str) or not raw['base']:
        raise SweepError(f"'base' must be a path string, got {raw['base']!r}")
    base = (root / raw['base']).resolve()
    if not base.is_file():
        raise SweepError(f"base config {raw['base']!r} not found (looked for {base})")
    name = raw.get('name', default_name)
    if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z0-9._+=-]+', name):
        raise SweepError(f"'name' must be a non-empty string of letters, digits and ._+=-, "
                         f'got {name!r}')

    description = raw.get('description', '')
    if not isinstance(description, str):
        raise SweepError(f"'description' must be a string, got {description!r}")
    grid_raw = raw.get('grid', {})
    if not isinstance(grid_raw, dict):
        raise SweepError(f"'grid' must map dotted keys to lists, got {grid_raw!r}")
    grid = tuple((key, _values(key, values, 'grid')) for key, values in grid_raw.items())

    groups_raw = raw.get('paired_keys', [])
    if not isinstance(groups_raw, list):
        raise SweepError("'paired_keys' must be a list of groups, each mapping keys to lists "
                         'of equal length')
    paired = []
    for number, group in enumerate(groups_raw):
        where = f'paired_keys[{number}]'
        if not isinstance(group, dict) or not group:
            raise SweepError(f'{where} must be a non-empty mapping of keys to lists, '
                             f'got {group!r}')
        entries = tuple((key, _values(key, values, where)) for key, values in group.items())
        lengths = {key: len(values) for key, values in entries}
        if len(set(lengths.values())) > 1:
            raise SweepError(f'{where}: paired keys need lists of equal length, got '
                             + ', '.join(f'{k}: {n}' for k, n in lengths.items()))
        paired.append(entries)

    seen: dict[str, str] = {}
    for where, keys in [('grid', [k for k, _ in grid])] + [
            (f'paired_keys[{i}]', [k for k, _ in g]) for i, g in enumerate(paired)]:
        for key in keys:
            if key in seen:
                raise SweepError(f'key {key!r} is in both {seen[key]} and {where}; a key may '
                                 'vary in one place only')
            seen[key] = where
            check_key(key)
    return SweepSpec(name=name, base=base, grid=grid, paired=tuple(paired),
                     seeds=_seeds(raw.get('seeds')), description=description)


def _values(key: Any, values: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(key, str) or not key:
        raise SweepError(f'{where}: keys must be non-empty dotted strings, got {key!r}')
    if key == 'seed':
        raise SweepError(f"{where}: vary the seed with 'seeds', not as a key")
    if not isinstance(values, list):
        raise SweepError(f'{where}: {key} must map to a list of values, got {values!r}')
    if not values:
        raise SweepError(f'{where}: {key} has an empty list of values')
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            raise SweepError(f'{where}: {key} has a non-finite value {value!r}')
    return tuple(values)


def _seeds(raw: Any) -> tuple[int, ...]:
    if raw is None:
        raise SweepError("'seeds' (a count, or a list of seeds) is required")
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SweepError(f"'seeds' count must be >= 1, got {raw}")
        return tuple(range(raw))
    if (not isinstance(raw, list) or not raw
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in raw)):
        raise SweepError(f"'seeds' must be a count or a non-empty list of integers >= 0, "
                         f'got {raw!r}')
    if len(set(raw)) != len(raw):
        raise SweepError(f"'seeds' lists a seed twice: {raw}")
    return tuple(raw)


def check_key(dotted: str) -> None:
    """Check that ``dotted`` names a (nested) field of TrainConfig.

    Raises:
        SweepError: naming the first unknown part and the valid fields at that level.
    """
    from pref_rl_learner.pebble.config import TrainConfig

    cls: Any = TrainConfig
    parts = dotted.split('.')
    for depth, part in enumerate(parts):
        if cls is None:
            raise SweepError(f'unknown key {dotted!r}: {".".join(parts[:depth])} is not a '
                             'section')
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            where = '.'.join(parts[:depth]) or 'TrainConfig'
            raise SweepError(f"unknown key {dotted!r}: {where} has no field {part!r} "
                             f"(valid: {', '.join(fields)})")
        cls = _section_type(typing.get_type_hints(cls)[part])


def _section_type(annotation: Any) -> type | None:
    """The dataclass a field holds (``X | None`` unwrapped), else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    return annotation if dataclasses.is_dataclass(annotation) else None


# ----------------------------------------------------------------------------- expansion

def expand_sweep(spec: SweepSpec) -> list[SweepRun]:
    """All runs of ``spec``: product(grid) × product(paired groups) × seeds, in that order."""
    grid_choices = [[(key, v) for v in values] for key, values in spec.grid]
    group_choices = [[tuple((key, values[i]) for key, values in group)
                      for i in range(len(group[0][1]))] for group in spec.paired]
    configs = []
    for grid_point in itertools.product(*grid_choices):
        for group_point in itertools.product(*group_choices):
            configs.append((dict(grid_point), [dict(g) for g in group_point]))
    names = _config_names(spec, configs, first_key_only=True)
    if len(set(names)) != len(names):
        names = _config_names(spec, configs, first_key_only=False)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SweepError(f'values that look alike give runs the same name: '
                         f"{', '.join(duplicates)}")
    runs = []
    for (grid_values, group_values), name in zip(configs, names, strict=True):
        overrides: dict[str, Any] = dict(grid_values)
        for group in group_values:
            overrides.update(group)
        for seed in spec.seeds:
            runs.append(SweepRun(index=len(runs), name=f'{name}-s{seed}' if name else f's{seed}',
                                 overrides={**overrides, 'seed': seed}))
    return runs


def _config_names(spec: SweepSpec, configs: list, first_key_only: bool) -> list[str]:
    varied = [key for key, values in spec.grid if len(values) > 1]
    for group in spec.paired:
        if len(group[0][1]) > 1:
            varied.extend(key for key, _ in (group[:1] if first_key_only else group))
    leaves = [key.rsplit('.', 1)[-1] for key in varied]
    labels = {key: leaf if leaves.count(leaf) == 1 else key
              for key, leaf in zip(varied, leaves, strict=True)}
    names = []
    for grid_values, group_values in configs:
        values = dict(grid_values)
        for group in group_values:
            values.update(group)
        names.append('-'.join(f'{labels[key]}={_short(values[key])}' for key in varied))
    return names


def _short(value: Any) -> str:
    """A value as a short file-name-safe string."""
    if value is None:
        text = 'none'
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f'{value:g}'
    elif isinstance(value, str):
        text = Path(value).name if '/' in value else value
    elif isinstance(value, list):
        text = 'x'.join(_short(v) for v in value)
    else:
        text = json.dumps(value, sort_keys=True)
    return re.sub(r'[^A-Za-z0-9._+-]+', '_', text)[:48] or '_'


# ----------------------------------------------------------------------------- validation

def set_arguments(run: SweepRun) -> list[str]:
    """``KEY=VALUE`` strings for ``pref-rl train --set`` that parse back to the run's values.

    Raises:
        SweepError: a value cannot be written as a YAML scalar that reads back equal.
    """
    out = []
    for key, value in run.overrides.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
        text = text.removesuffix('\n...').strip()
        if yaml.safe_load(text) != value:
            raise SweepError(f'run {run.name}: {key}={value!r} does not survive --set '
                             '(YAML round trip)')
        out.append(f'{key}={text}')
    return out


def validate_runs(spec: SweepSpec, runs: Sequence[SweepRun]) -> None:
    """Build every run's TrainConfig (base + overrides), so a bad value fails before
    anything runs.

    Raises:
        SweepError: naming the first bad run and the config error.
    """
    from pref_rl_learner.pebble.config import load_config

    for run in runs:
        set_arguments(run)
        try:
            load_config(spec.base, dict(run.overrides))
        except ConfigError as err:
            raise SweepError(f'run {run.name}: {err}') from None
