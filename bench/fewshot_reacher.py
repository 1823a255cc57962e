"""Few-shot benchmark on the reacher: one hidden held-out target per run, every arm and control.

The procedure is bench/_fewshot_headline.py's: ``pref-rl collect reacher`` of the 12
training targets (noisy expert, cross-goal and random episodes; joint angles and velocities
observed, never the target or the fingertip-to-target offset), ``pref-rl pretrain --config
config/pretrain_reacher.yaml`` on a CPU-affordable budget (3000 outer steps, cosine 1e-3 ->
1e-5, a 3x128 linear-output state reward instead of the paper's 100k steps at 1e-4), then
``config/sweeps/headline_reacher.json``: 4 of the 8 held-out targets x 2 seeds for fewshot,
init, pebble (48 queries, 8 a session), the random-label control and SAC on the true reward.

Run: scripts/bench fewshot_reacher (hours on 2 cores; resumes where it stopped).
"""

from _fewshot_headline import Headline, main

HEADLINE = Headline(
    name='fewshot_reacher', family='reacher', dataset='reacher_hidden_goal', collect_args=(),
    pretrain_config='pretrain_reacher.yaml',
    pretrain_overrides=('steps=3000', 'outer_lr=1e-3', 'outer_lr_schedule=cosine',
                        'outer_lr_final=1e-5', 'eval_interval=300',
                        'reward_model.hidden_sizes=[128,128,128]', 'reward_model.inputs=state',
                        'reward_model.output=linear'),
    pretrain_dir='pretrain_reacher', sweep='headline_reacher.json', quick_steps=3000,
    fewshot_max_queries=24, fewshot_min_fraction=0.5,
    title='reacher, one hidden held-out target per run (4 targets x 2 seeds)',
    notes='One hidden target per run: joint angles and velocities observed. Success: the '
          'fingertip within 2 cm of the target at some step, 10 episodes from random poses '
          'every 1000 env steps. pebble, init and fewshot share the budget (48 queries, 8 a '
          'session every 3000 steps from step 1000). Controls: fewshot_random_labels, the '
          'prior\'s accuracy on each held-out target\'s pairs before any label, '
          'sac_true_reward. CPU budget: 18k env steps; pretraining 3000 outer steps on the 12 '
          'training targets.')

if __name__ == '__main__':
    main(HEADLINE, __doc__)
