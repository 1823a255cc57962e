"""Few-shot benchmark on the reacher: queries to 90% held-out success, fewshot / init / pebble.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect reacher`` (noisy expert,
cross-goal and random episodes for the 12 training targets; the 8 held-out targets as eval
tasks), ``pref-rl pretrain --config config/pretrain_reacher.yaml`` on a CPU-affordable budget
(1500 outer steps at 1e-3 and a 3x128 linear-output state reward instead of the paper's 100k
steps at 1e-4), then ``config/sweeps/headline_reacher.json`` (2 seeds per arm, oracle
teacher, 20k env steps, the 8 held-out targets evaluated every 2000 steps).

Run: scripts/bench fewshot_reacher (about 45 minutes on one core; --quick: a smoke test).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_reacher', family='reacher', dataset='reacher', collect_args=(),
    pretrain_config='pretrain_reacher.yaml',
    pretrain_overrides=('steps=1500', 'outer_lr=1e-3', 'eval_interval=300',
                        'reward_model.hidden_sizes=[128,128,128]', 'reward_model.inputs=state',
                        'reward_model.output=linear'),
    pretrain_dir='pretrain_reacher', sweep='headline_reacher.json', quick_steps=4000,
    title='reacher, held-out targets: fewshot / init / pebble',
    notes='Peer: pebble (reward from scratch), same sweep, same seeds, same teacher (oracle). '
          'Queries: asked at the first held-out evaluation (every 2000 env steps, 16 episodes '
          'over the 8 held-out targets, success = fingertip within 2 cm at the end) with '
          'success >= threshold. CPU-affordable budget: 20k env steps, 2 seeds; pretraining '
          '1500 outer steps on the 12 training targets (pref-rl collect reacher defaults).')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
