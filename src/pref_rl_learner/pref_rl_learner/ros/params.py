"""ROS parameters declared from a frozen config dataclass, descriptions from its docstrings."""

from __future__ import annotations

import dataclasses
import typing
from typing import TypeVar

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from pref_rl_learner.config import field_docs, from_mapping

T = TypeVar('T')


def declare_config(node: Node, cls: type[T], prefix: str = '') -> T:
    """Declare one parameter per field of ``cls`` (default = field default) and build it.

    Only scalar fields (int, float, str, bool) become parameters. They are declared with
    dynamic typing and validated by :func:`~pref_rl_learner.config.from_mapping`, so that
    ``-p rate_hz:=50`` (an int for a float field) works and a wrong type is a
    :class:`~pref_rl_learner.config.ConfigError` naming the field, not rclpy's traceback.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if hints[f.name] not in (int, float, str, bool):
            continue
        name = prefix + f.name
        descriptor = ParameterDescriptor(description=docs.get(f.name, ''), dynamic_typing=True)
        values[f.name] = node.declare_parameter(name, f.default, descriptor).value
    return from_mapping(cls, values)
