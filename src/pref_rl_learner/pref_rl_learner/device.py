"""Where models run: CUDA when present and asked for, CPU otherwise."""

from __future__ import annotations

import torch

from pref_rl_learner.config import ConfigError


def resolve_device(spec: str = 'auto') -> torch.device:
    """Map a config string to a torch device.

    ``auto`` picks ``cuda`` when a CUDA device is present, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` are taken literally.

    Raises:
        ConfigError: the spec is not a device name, or names CUDA on a machine without it.
    """
    if spec == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise ConfigError(f'device {spec!r} is not a device name (auto, cpu, cuda, cuda:N)') \
            from err
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'device {spec!r} was asked for but CUDA is not available')
    if device.type not in ('cpu', 'cuda'):
        raise ConfigError(f'device {spec!r}: only cpu and cuda are supported')
    return device
