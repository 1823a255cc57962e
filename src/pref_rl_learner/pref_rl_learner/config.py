"""Frozen-dataclass configs: one helper maps YAML/dicts onto them, field docstrings included.

A config is a frozen dataclass whose fields each carry a docstring (a string literal right
after the field, as in acme's configs). :func:`field_docs` reads those docstrings from the
source, so CLI help and ROS parameter descriptions come from the one place they are written.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pref_rl_learner.errors import PrefRLError

T = TypeVar('T')


class ConfigError(PrefRLError, ValueError):
    """A config mapping has an unknown key or a value of the wrong type."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> docstring written under it in the class body ('' when none)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return {f.name: docs.get(f.name, '') for f in dataclasses.fields(cls)}


_YAML11_FLOAT = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+')
"""Exponent notation without a dot, which YAML 1.1 (PyYAML) leaves a string."""


def _coerce(cls: type, name: str, annotation: Any, value: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if annotation in (int, float, str, bool):
        if type(value) is not annotation:
            raise ConfigError(f'{cls.__name__}.{name}: expected {annotation.__name__}, '
                              f'got {type(value).__name__} {value!r}')
        return value
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{cls.__name__}.{name}: expected a list, got {value!r}')
        (item, *_rest) = typing.get_args(annotation)
        return tuple(_coerce(cls, f'{name}[{i}]', item, v) for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f'{cls.__name__}.{name}: expected a mapping, got {value!r}')
        try:
            return from_mapping(annotation, value)
        except ConfigError as err:
            raise ConfigError(f'{cls.__name__}.{name} -> {err}') from None
    return value


def from_mapping(cls: type[T], mapping: Mapping[str, Any]) -> T:
    """Build config ``cls`` from a (YAML-loaded) mapping, one key per field, recursively.

    Raises:
        ConfigError: a key is not a field (the message lists the valid ones) or a value has
            the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)} "
                          f"(valid: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(cls, k, hints[k], v) for k, v in mapping.items()})


def load_yaml_config(cls: type[T], path: str | Path | None,
                     overrides: Mapping[str, Any] | None = None) -> T:
    """``cls`` from a YAML mapping file (its defaults when ``path`` is None), with dotted
    ``overrides`` (``{'sac.batch_size': 128}``) applied first.

    Raises:
        ConfigError: unreadable YAML, not a mapping, an unknown key (named, with the file) or
            a bad value.
    """
    import yaml

    mapping: dict[str, Any] = {}
    if path is not None:
        try:
            mapping = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f'{path}: cannot read config: {err}') from err
        if not isinstance(mapping, dict):
            raise ConfigError(f'{path}: a config must be a YAML mapping')
    for dotted, value in (overrides or {}).items():
        node = mapping
        *parents, leaf = dotted.split('.')
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f'override {dotted}: {key} is not a mapping')
        node[leaf] = value
    try:
        return from_mapping(cls, mapping)
    except ConfigError as err:
        raise ConfigError(f'{path or cls.__name__}: {err}') from None
