"""Headline benchmark: the point mass's hidden held-out targets learned from preferences.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect point_mass`` of the 16
training targets (noisy expert, cross-goal and random episodes; the goal never observed),
``pref-rl pretrain --config config/pretrain_point_mass.yaml`` (the checkpoint chosen on two
training targets kept out), then the sweep ``config/sweeps/headline_point_mass.json``: every
one of the 8 held-out targets x 2 seeds for ``fewshot``, ``init``, ``pebble`` (36 queries, 6
a session every 2000 env steps, 12000 steps), the random-label control and SAC on the true
reward. The claim checked: fewshot
reaches 90% success on at least 80% of its runs with at most 12 queries, pebble needs at
least 4x as many or never gets there, and the random-label control stays below 20%.

Run: scripts/bench fewshot_point_mass (about 3 hours on 2 quiet cores; resumes where it
stopped; --summarize-only writes the result file from the runs done so far; --quick: a smoke
test).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_point_mass', family='point_mass', dataset='point_mass_hidden_goal',
    collect_args=(), pretrain_config='pretrain_point_mass.yaml', pretrain_overrides=(),
    pretrain_dir='pretrain_point_mass', sweep='headline_point_mass.json', quick_steps=3000,
    fewshot_max_queries=12, fewshot_min_fraction=0.8,
    title='point mass, one hidden held-out target per run (8 targets x 2 seeds)',
    notes='One hidden target per run: the learner observes position and velocity only. '
          'Success: the mass within 5 cm of the target at some step, 10 deterministic '
          'episodes from random starts every 1000 env steps; queries: asked by that '
          'evaluation. pebble, init and fewshot share the budget and schedule (36 queries, '
          '6 a session every 2000 steps from step 1000: SAC needs that long to follow even '
          'the true reward, see schedule_floor_* in checks). Controls: fewshot_random_labels '
          '(same prior and budget, every answer a coin flip), the prior\'s accuracy on each '
          'held-out target\'s pairs before any label (prior_accuracy_per_target; from '
          'datasets/<dataset>_eval, never used in pretraining) and sac_true_reward (upper '
          'bound). The prior: pref-rl pretrain on the 16 training targets.')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
