"""Few-shot benchmark on MetaWorld door-close-v3 (an ML10 test env), fewshot / init / pebble.

The procedure is bench/_fewshot_headline.py's, on a CPU-affordable budget (the paper's needs a
GPU and days): ``pref-rl collect metaworld`` on the ten ML10 training envs only, 4 training
and 1 held-out variation each, 20 episodes of 200 steps per variation (8 noisy-expert, 4
another env's expert, 6 another variation's expert, 2 random); ``pref-rl pretrain --config
config/pretrain_metaworld.yaml`` for 1000 outer steps at 1e-3 with a 3x128 linear-output
reward; then ``config/sweeps/headline_metaworld.json`` (one seed per arm, oracle teacher, 20k
env steps, 10 evaluation episodes on door-close's held-out variations every 5000 steps).

Run: scripts/bench fewshot_metaworld (about 1 hour on one core; --quick: a smoke test).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_metaworld', family='metaworld', dataset='metaworld_small',
    collect_args=('--tasks-per-env', '4', '--eval-tasks-per-env', '1', '--expert-ep', '8',
                  '--cross-ep', '4', '--within-env-ep', '6', '--random-ep', '2',
                  '--episode-steps', '200'),
    pretrain_config='pretrain_metaworld.yaml',
    pretrain_overrides=('steps=1000', 'outer_lr=1e-3', 'eval_interval=200',
                        'reward_model.hidden_sizes=[128,128,128]',
                        'reward_model.output=linear'),
    pretrain_dir='pretrain_metaworld_small', sweep='headline_metaworld.json', quick_steps=3000,
    title='MetaWorld door-close-v3 (ML10 test env): fewshot / init / pebble',
    notes='Peer: pebble (reward from scratch), same sweep, same seed, same teacher (oracle). '
          'Success: held-out door-close-v3 variations, 10 episodes every 5000 env steps. '
          'CPU-affordable budget: 20k env steps (the paper: 500k-1M), one seed per arm, '
          'pretraining 1000 outer steps on a reduced ML10 training set (door-close is never '
          'in it).')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
