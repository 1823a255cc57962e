"""``pref-rl train``: start or resume a run directory, with a progress bar."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pref_rl_learner.config import ConfigError
from pref_rl_learner.pebble.config import TrainConfig, load_config, to_mapping
from pref_rl_learner.pebble.trainer import CHECKPOINT_NAME, PebbleTrainer, RunSummary

CONFIG_NAME = 'config.yaml'


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key.sub=value`` strings to a dict, values parsed as YAML scalars."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise ConfigError(f'--set {pair!r} is not of the form key=value')
        out[key] = yaml.safe_load(value)
    return out


def prepare_run(config_path: Path | None, run_dir: Path | None,
                overrides: dict[str, Any]) -> tuple[TrainConfig, Path, bool]:
    """Resolve the config and run directory; returns (config, run_dir, resume)."""
    if run_dir is not None and (run_dir / CHECKPOINT_NAME).exists():
        saved = load_config(run_dir / CONFIG_NAME)
        if config_path is not None or overrides:
            asked = load_config(config_path or run_dir / CONFIG_NAME, overrides)
            if to_mapping(asked) != to_mapping(saved):
                raise ConfigError(f'{run_dir} holds a run with a different config; pass a new '
                                  '--path, or no --config/--set to resume it')
        return saved, run_dir, True
    if config_path is None:
        raise ConfigError('--config is required to start a new run')
    config = load_config(config_path, overrides)
    if run_dir is None:
        stamp = time.strftime('%Y%m%d-%H%M%S')
        run_dir = Path('runs') / f'{stamp}-{config.algorithm}-{config.task}-s{config.seed}'
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(to_mapping(config), sort_keys=False))
    return config, run_dir, False


def train(config_path: Path | None, run_dir: Path | None, overrides: dict[str, Any],
          stop_at_step: int | None = None, progress: bool = True) -> RunSummary:
    """Run (or resume) training; Ctrl-C pauses at the next episode end with a checkpoint."""
    config, run_dir, resume = prepare_run(config_path, run_dir, overrides)
    trainer = PebbleTrainer(config, run_dir, resume=resume)
    for note in trainer.notes:
        print(f'pref-rl train: {note}', file=sys.stderr)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.total_steps, initial=trainer.state.step, unit='step',
                   dynamic_ncols=True, desc=f'{config.algorithm} {config.task}')

    def report(step: int, figures: dict[str, float]) -> None:
        if bar is not None and (step % 200 == 0 or step == config.total_steps):
            bar.n = step
            bar.set_postfix({k: ('-' if isinstance(v, float) and math.isnan(v) else
                                 f'{v:.3g}' if isinstance(v, float) else v)
                             for k, v in figures.items()}, refresh=True)

    previous = signal.signal(signal.SIGINT, lambda *_: trainer.request_stop())
    try:
        summary = trainer.run(stop_at_step=stop_at_step, progress=report)
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    state = 'finished' if summary.step >= config.total_steps else 'paused (resume: same --path)'
    print(f'{run_dir}: {state} at step {summary.step}, {summary.queries} queries, '
          f'held-out success {summary.eval_success:.2f}, return {summary.eval_return:.1f}')
    return summary
