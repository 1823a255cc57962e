"""Headline benchmark: queries to 90% held-out point-mass success, fewshot / init / pebble.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect point_mass`` (noisy expert,
cross-goal and random episodes for the 16 training goals; the 8 held-out goals as eval tasks),
``pref-rl pretrain --config config/pretrain_point_mass.yaml``, then the sweep
``config/sweeps/headline_point_mass.json`` (3 seeds per arm, oracle teacher, held-out goals
evaluated every 1000 env steps). The goal: fewshot at ≤ 6 queries and ≥ 6x fewer than pebble.

Run: scripts/bench fewshot_point_mass (about 20 minutes on 2 cores; --quick: a smoke test).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_point_mass', family='point_mass', dataset='point_mass', collect_args=(),
    pretrain_config='pretrain_point_mass.yaml', pretrain_overrides=(),
    pretrain_dir='pretrain_point_mass',
    sweep='headline_point_mass.json', quick_steps=4000,
    title='point mass, held-out goals: fewshot / init / pebble',
    notes='Peer: pebble (reward from scratch), same sweep, same seeds, same teacher (oracle). '
          'Queries: asked at the first held-out evaluation (every 1000 env steps, 16 episodes '
          'over the 8 held-out goals) with success >= threshold. Pretraining on the 16 '
          'training goals (pref-rl collect point_mass defaults; '
          'config/pretrain_point_mass.yaml).')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
