"""ROS parameters declared from config dataclasses: ints for floats, typed errors for the rest."""

from dataclasses import dataclass

import pytest
import rclpy
from rclpy.parameter import Parameter

from pref_rl_learner.config import ConfigError
from pref_rl_learner.ros.params import declare_config


@dataclass(frozen=True)
class _Config:
    rate_hz: float = 10.0
    """A float parameter."""
    name: str = 'robot'
    """A string parameter."""


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _declared(context, **overrides):
    node = rclpy.create_node('params_test', context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in overrides.items()])
    try:
        return declare_config(node, _Config)
    finally:
        node.destroy_node()


def test_an_int_for_a_float_parameter_becomes_a_float(context):
    config = _declared(context, rate_hz=50)
    assert config.rate_hz == 50.0 and isinstance(config.rate_hz, float)
    assert _declared(context) == _Config()


def test_a_wrong_parameter_type_is_a_config_error_naming_the_field(context):
    with pytest.raises(ConfigError, match=r'_Config\.name: expected str'):
        _declared(context, name=3)
