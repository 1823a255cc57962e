from dataclasses import dataclass

import pytest

from pref_rl_learner.config import ConfigError, field_docs, from_mapping


@dataclass(frozen=True)
class Inner:
    """A nested config."""

    width: int = 256
    """Hidden units."""


@dataclass(frozen=True)
class Outer:
    """A config."""

    lr: float = 3e-4
    """Learning rate."""
    name: str = 'sac'
    hidden: tuple[int, ...] = (256, 256)
    """Layer sizes."""
    inner: Inner = Inner()
    seed: int | None = None
    """Optional seed."""


def test_field_docs_come_from_the_class_body():
    assert field_docs(Outer) == {'lr': 'Learning rate.', 'name': '', 'hidden': 'Layer sizes.',
                                 'inner': '', 'seed': 'Optional seed.'}


def test_from_mapping_builds_nested_configs_and_widens_ints():
    cfg = from_mapping(Outer, {'lr': 1, 'hidden': [64, 64, 64], 'inner': {'width': 8},
                               'seed': None})
    assert cfg == Outer(lr=1.0, hidden=(64, 64, 64), inner=Inner(8), seed=None)
    assert from_mapping(Outer, {'seed': 3}).seed == 3


def test_from_mapping_reads_exponents_yaml_leaves_as_strings():
    # PyYAML (YAML 1.1) loads 1e-3 as the string '1e-3'; 1.0e-3 as a float.
    assert from_mapping(Outer, {'lr': '1e-3'}).lr == 1e-3
    assert from_mapping(Outer, {'lr': '-2E+2'}).lr == -200.0
    with pytest.raises(ConfigError, match="Outer.lr: expected float, got str 'fast'"):
        from_mapping(Outer, {'lr': 'fast'})


def test_from_mapping_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match=r'unknown key\(s\) lrr .*valid: lr'):
        from_mapping(Outer, {'lrr': 1.0})
    with pytest.raises(ConfigError, match='Outer.name: expected str'):
        from_mapping(Outer, {'name': 3})
    with pytest.raises(ConfigError, match=r'hidden\[1\]: expected int'):
        from_mapping(Outer, {'hidden': [1, 'x']})
    with pytest.raises(ConfigError, match='Inner: unknown key'):
        from_mapping(Outer, {'inner': {'depth': 2}})
