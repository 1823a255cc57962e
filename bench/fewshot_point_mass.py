"""Headline benchmark: queries to 90% held-out point-mass success, fewshot / init / pebble.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect point_mass`` (noisy expert,
cross-goal and random episodes for the 16 training goals; the 8 held-out goals as eval tasks),
``pref-rl pretrain --config config/pretrain_point_mass.yaml``, then the sweep
``config/sweeps/headline_point_mass.json`` (3 seeds per arm, oracle teacher, held-out goals
evaluated every 1000 env steps). The goal: fewshot at ≤ 6 queries and ≥ 6x fewer than pebble.

Run: scripts/bench fewshot_point_mass (about 20 minutes on 2 cores; --quick: a smoke test).
"""

from pathlib import Path

import numpy as np
from _fewshot_headline import Headline, main

from pref_rl_learner.offline_reward import load_reward_model
from pref_rl_robot.tasks.point_mass import EVAL_TARGETS, GOAL_SCALE, SUCCESS_RADIUS


def reward_peaks(checkpoint: Path) -> dict:
    """Where the pretrained reward peaks, before any label: for each held-out goal, the
    distance from the goal to the best cell of a 1 cm grid over the arena (the mass at rest).
    A policy maximising the reward settles there; success needs < 5 cm."""
    model = load_reward_model(checkpoint, 'cpu')
    cells = np.linspace(-1.0, 1.0, 201, dtype=np.float32)
    xy = np.stack(np.meshgrid(cells, cells), -1).reshape(-1, 2)
    errors = []
    for target in EVAL_TARGETS:
        goal = np.asarray(target, np.float32) * GOAL_SCALE
        obs = np.concatenate([xy, np.zeros_like(xy), np.broadcast_to(goal, xy.shape)], 1)
        rewards = model.reward(obs, np.zeros_like(xy)).numpy()
        errors.append(float(np.linalg.norm(xy[rewards.argmax()] - goal)))
    return {'reward_peak_error_cm_per_held_out_goal': [round(100 * e, 1) for e in errors],
            'reward_peak_error_cm_mean': round(100 * float(np.mean(errors)), 2),
            'success_radius_cm': round(100 * SUCCESS_RADIUS, 1)}


HEADLINE = Headline(
    name='fewshot_point_mass', family='point_mass', dataset='point_mass', collect_args=(),
    pretrain_config='pretrain_point_mass.yaml', pretrain_overrides=(),
    pretrain_dir='pretrain_point_mass',
    sweep='headline_point_mass.json', quick_steps=4000, pretrained_figures=reward_peaks,
    title='point mass, held-out goals: fewshot / init / pebble',
    notes='Peer: pebble (reward from scratch), same sweep, same seeds, same teacher (oracle). '
          'Queries: asked at the first held-out evaluation (every 1000 env steps, 16 episodes '
          'over the 8 held-out goals) with success >= threshold. Pretraining on the 16 '
          'training goals (pref-rl collect point_mass defaults; '
          'config/pretrain_point_mass.yaml).')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
