"""Few-shot benchmark on the Panda reach (PyBullet): one hidden held-out target per run.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect panda_reach`` of the 16
training targets (noisy expert, cross-goal and random episodes; the end effector observed,
never the goal), ``pref-rl pretrain --config config/pretrain_panda_reach.yaml`` (3000 outer
steps, 25-step segments), then ``config/sweeps/headline_panda_reach.json``: 4 of the 8
held-out targets x 2 seeds for fewshot, init, pebble (48 queries, 8 a session), the
random-label control and SAC on the true reward. The goal: fewshot at 90% success with at
most 24 queries on most held-out targets.

Run: scripts/bench fewshot_panda_reach (hours on 2 cores; resumes where it stopped).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_panda_reach', family='panda_reach', dataset='panda_reach_hidden_goal',
    collect_args=(), pretrain_config='pretrain_panda_reach.yaml', pretrain_overrides=(),
    pretrain_dir='pretrain_panda_reach', sweep='headline_panda_reach.json', quick_steps=2000,
    fewshot_max_queries=24, fewshot_min_fraction=0.5,
    title='Panda reach (PyBullet), one hidden held-out target per run (4 targets x 2 seeds)',
    notes='One hidden target per run: the end effector observed. Success: the end effector '
          'within 3 cm of the target at some step, 10 episodes from jittered starts every '
          '1000 env steps. pebble, init and fewshot share the budget (48 queries, 8 a session '
          'every 2000 steps from step 1000). Controls: fewshot_random_labels, the prior\'s '
          'accuracy on each held-out target\'s pairs before any label, sac_true_reward. '
          'Pretraining 3000 outer steps on the 16 training targets.')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
