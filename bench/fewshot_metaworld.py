"""Few-shot benchmark on MetaWorld door-close-v3 (an ML10 test env), one hidden variation a run.

The procedure is bench/_fewshot_headline.py's, on a CPU-affordable budget (the paper's needs a
GPU and days): ``pref-rl collect metaworld`` on the ten ML10 training envs only, 4 training
variations each, 20 episodes of 200 steps per variation (8 noisy-expert, 4 another env's
expert, 6 another variation's expert, 2 random; the experts read the hidden goal, the data do
not); ``pref-rl pretrain --config config/pretrain_metaworld.yaml`` for 1000 outer steps at
1e-3 with a 3x128 linear-output reward; an evaluation-only set of door-close's first 2 test
variations (the prior's accuracy there before any label); then
``config/sweeps/headline_metaworld.json`` (2 held-out variations x 1 seed, every arm and
control, 20k env steps, 10 evaluation episodes every 5000 steps).

Run: scripts/bench fewshot_metaworld (hours on 2 cores; resumes; --quick: a smoke test).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_metaworld', family='metaworld', dataset='metaworld_small',
    collect_args=('--tasks-per-env', '4', '--expert-ep', '8', '--cross-ep', '4',
                  '--within-env-ep', '6', '--random-ep', '2', '--episode-steps', '200'),
    eval_collect_args=('--envs', 'door-close-v3'), eval_tasks='2',
    fewshot_max_queries=16, fewshot_min_fraction=0.5,
    pretrain_config='pretrain_metaworld.yaml',
    pretrain_overrides=('steps=1000', 'outer_lr=1e-3', 'eval_interval=200',
                        'reward_model.hidden_sizes=[128,128,128]',
                        'reward_model.output=linear'),
    pretrain_dir='pretrain_metaworld_small', sweep='headline_metaworld.json', quick_steps=3000,
    title='MetaWorld door-close-v3 (ML10 test env), one hidden variation per run',
    notes='One hidden variation per run (partially observable: the goal entries are zero). '
          'Success: MetaWorld\'s flag at some step, 10 episodes every 5000 env steps. pebble, '
          'init and fewshot share the budget (32 queries, 8 a session). Controls: the '
          'random-label arm, the prior\'s accuracy on each variation\'s pairs before any '
          'label, SAC on the true reward. CPU-affordable budget: 20k env steps (the paper: '
          '500k-1M), pretraining 1000 outer steps on a reduced ML10 training set (door-close '
          'is never in it).')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
