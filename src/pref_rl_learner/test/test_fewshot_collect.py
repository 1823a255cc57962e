"""``pref-rl collect``: shards that load, true rewards, determinism, resume, experts, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pref_rl_learner.cli import main
from pref_rl_learner.fewshot.collect import collect, plan_jobs
from pref_rl_learner.fewshot.collect_config import default_config
from pref_rl_learner.fewshot.dataset import MANIFEST, load_dataset, read_manifest
from pref_rl_learner.fewshot.rollout import CollectError
from pref_rl_robot.tasks import goal_set
from pref_rl_robot.tasks.reacher_kinematics import arm_points

SMALL = {'tasks_per_env': 2, 'eval_tasks_per_env': 1, 'expert_episodes': 3,
         'cross_episodes': 2, 'random_episodes': 1}


def _checksums(directory: Path) -> dict[str, str]:
    return {r['task_id']: r['sha256'] for r in read_manifest(directory)['tasks']}


def test_point_mass_shards_hold_true_rewards_and_are_deterministic(tmp_path: Path) -> None:
    config = default_config('point_mass', seed=3, **SMALL)
    report = collect(config, tmp_path / 'a', workers=2, progress=False)
    assert (report.tasks, report.reused, report.segments) == (3, 0, 3 * 6 * 5)
    dataset = load_dataset(tmp_path / 'a')
    assert dataset.ids('train') == ['point_mass/train/goal00', 'point_mass/train/goal01']
    assert dataset.ids('eval') == ['point_mass/eval/goal00']
    for task_id, task in dataset.tasks.items():
        # Position and velocity only: the target is hidden from the learner.
        assert task.observations.shape == (30, 10, 4) and task.actions.shape == (30, 10, 2)
        assert task.rewards.shape == (30, 10) and task.sources.shape == (30,)
        assert sorted(set(task.sources)) == ['cross_goal', 'expert', 'random']
        # Rewards are the task's true rewards for its own target:
        # r_t = -||p_{t+1} - g|| - 0.1 * mean(a_t^2), p_{t+1} read from o_{t+1}.
        goal = np.array(read_manifest(tmp_path / 'a')['tasks'][
            list(dataset.tasks).index(task_id)]['goal'], np.float32)
        split, index = task_id.split('/')[1], int(task_id[-2:])
        np.testing.assert_allclose(goal, goal_set('point_mass', split)[index], atol=1e-6)
        recomputed = (-np.linalg.norm(task.observations[:, 1:, :2] - goal, axis=-1)
                      - 0.05 * (task.actions[:, :-1] ** 2).sum(-1))
        np.testing.assert_allclose(task.rewards[:, :-1], recomputed, atol=1e-5)
        assert np.all(np.abs(task.actions) <= 1.0)
        # Experts aimed at this goal earn more than experts aimed elsewhere and than chance.
        returns = {s: task.rewards[task.sources == s].sum(1).mean()
                   for s in ('expert', 'cross_goal', 'random')}
        assert returns['expert'] > returns['random'] and returns['expert'] > returns[
            'cross_goal']
    # Same seed, one worker instead of two: byte-identical shards. Another seed: other data.
    collect(config, tmp_path / 'b', workers=1, progress=False)
    assert _checksums(tmp_path / 'a') == _checksums(tmp_path / 'b')
    collect(default_config('point_mass', seed=4, **SMALL), tmp_path / 'c', progress=False)
    assert not set(_checksums(tmp_path / 'a').values()) & set(
        _checksums(tmp_path / 'c').values())


def test_reacher_rewards_and_segment_stride(tmp_path: Path) -> None:
    config = default_config('reacher', tasks_per_env=1, eval_tasks_per_env=0,
                            expert_episodes=1, cross_episodes=1, random_episodes=1,
                            epsilon=(0.0,), segment_stride=5)
    collect(config, tmp_path, progress=False)
    record = read_manifest(tmp_path)['tasks'][0]
    task = load_dataset(tmp_path).tasks['reacher/train/goal00']
    # Joint angles and velocities only; 50-step episodes, segments start at 0, 5, .., 40.
    assert task.observations.shape == (3 * 9, 10, 6)
    np.testing.assert_array_equal(task.observations[0, 5:], task.observations[1, :5])
    # r_t = -||tip - goal|| - 0.1 mean(a^2), the tip from the joint angles of o_{t+1}.
    tip = arm_points(task.observations[:, 1:])[1]
    recomputed = (-np.linalg.norm(tip - goal_set('reacher', 'train')[0], axis=-1)
                  - 0.1 * (task.actions[:, :-1] ** 2).mean(-1))
    # (Within 1 mm: MuJoCo's joint-limit constraints let the angles overshoot a little.)
    np.testing.assert_allclose(task.rewards[:, :-1], recomputed, atol=1e-3)
    assert record['success_rate']['expert'] == 1.0  # the noiseless scripted reacher arrives


def test_interrupted_collection_resumes_and_finished_one_is_kept(tmp_path: Path) -> None:
    config = default_config('point_mass', **SMALL)
    collect(config, tmp_path, progress=False)
    original = _checksums(tmp_path)
    with pytest.raises(CollectError, match='already holds a finished dataset'):
        collect(config, tmp_path, progress=False)
    # Simulate a crash after two shards, one of which was torn.
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest['complete'] = False
    lost = manifest['tasks'].pop()
    (tmp_path / lost['shard']).unlink()
    torn = tmp_path / manifest['tasks'][0]['shard']
    torn.write_bytes(torn.read_bytes()[:50])
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CollectError, match='other settings'):
        collect(default_config('point_mass', seed=1, **SMALL), tmp_path, progress=False)
    report = collect(config, tmp_path, progress=False)
    assert report.reused == 1 and report.tasks == 3
    assert _checksums(tmp_path) == original
    report = collect(default_config('point_mass', seed=1, **SMALL), tmp_path,
                     progress=False, overwrite=True)
    assert report.reused == 0 and _checksums(tmp_path) != original


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CollectError, match='evaluation task'):
        plan_jobs(default_config('metaworld', envs=('reach-v3', 'door-close-v3')))
    # An evaluation-only set (held-out variations only) may hold an evaluation env: it
    # measures a prior there, and pretraining refuses it.
    jobs = plan_jobs(default_config('metaworld', envs=('door-close-v3',), tasks_per_env=0,
                                    eval_tasks_per_env=2))
    assert [job.task_id for job in jobs] == ['door-close-v3/eval/var00',
                                             'door-close-v3/eval/var01']
    with pytest.raises(CollectError, match='unknown MetaWorld env'):
        plan_jobs(default_config('metaworld', envs=('flying-v3',)))
    with pytest.raises(CollectError, match='16 train goals'):
        plan_jobs(default_config('point_mass', tasks_per_env=17))
    with pytest.raises(CollectError, match='metaworld only'):
        default_config('point_mass', within_episodes=2)
    with pytest.raises(CollectError, match='epsilon'):
        default_config('reacher', noise_type='uniform', epsilon=(1.5,))
    with pytest.raises(CollectError, match='no episodes'):
        default_config('reacher', expert_episodes=0, cross_episodes=0, random_episodes=0)
    with pytest.raises(CollectError, match='unknown collect setting'):
        default_config('reacher', expert_ep=3)
    # The paper's MetaWorld recipe is the default, on the ML10 training envs only.
    config = default_config('metaworld')
    assert (config.tasks_per_env, config.cross_episodes, config.within_episodes,
            config.expert_episodes, config.random_episodes, config.epsilon) == (
        25, 10, 25, 15, 2, (0.1,))
    jobs = plan_jobs(config)
    assert len(jobs) == 10 * 25  # training variations only: none held out reaches the prior
    assert not {'button-press-v3', 'door-close-v3', 'drawer-open-v3', 'sweep-into-v3',
                'window-close-v3'} & {job.env_name for job in jobs}


def test_metaworld_tiny_collection(tmp_path: Path) -> None:
    config = default_config('metaworld', envs=('reach-v3',), tasks_per_env=1,
                            eval_tasks_per_env=0, expert_episodes=1, cross_episodes=1,
                            within_episodes=1, random_episodes=1, episode_steps=50)
    collect(config, tmp_path, progress=False)
    task = load_dataset(tmp_path).tasks['reach-v3/train/var00']
    assert task.observations.shape == (8, 25, 39) and task.actions.shape == (8, 25, 4)
    assert sorted(set(task.sources)) == ['cross_env', 'expert', 'random', 'within_env']
    assert np.all((task.rewards >= 0) & (task.rewards <= 10))
    returns = {s: task.rewards[task.sources == s].sum() for s in ('expert', 'random')}
    assert returns['expert'] > returns['random']


def _save_actor(path: Path, observation_dim: int, action_dim: int,
                run_format: bool = False) -> None:
    """A random SAC actor as an actor-state checkpoint or as a ``pref-rl train`` one."""
    import torch

    from pref_rl_learner.checkpoint import save_checkpoint
    from pref_rl_learner.sac.agent import SAC, SACConfig

    agent = SAC(observation_dim, action_dim, SACConfig(hidden_sizes=(16,), device='cpu'))
    if run_format:
        save_checkpoint(path, {'agent': agent.state_dict(),
                               'config': {'sac': {'log_std_bounds': [-5.0, 2.0]}}})
        return
    architecture, arrays = agent.actor_state()
    save_checkpoint(path, {'architecture': architecture,
                           'actor': {k: torch.as_tensor(v) for k, v in arrays.items()}})


def test_panda_push_scripted_expert_and_sac_expert_checkpoints(tmp_path: Path) -> None:
    config = default_config('panda_push', tasks_per_env=1, eval_tasks_per_env=0,
                            expert_episodes=1, cross_episodes=1, random_episodes=1,
                            epsilon=(0.0,), init_noise=0.0)
    collect(config, tmp_path / 'scripted', progress=False)
    record = read_manifest(tmp_path / 'scripted')['tasks'][0]
    assert record['success_rate']['expert'] == 1.0 and record['success_rate']['random'] == 0.0
    task = load_dataset(tmp_path / 'scripted').tasks['panda_push/train/goal00']
    assert task.observations.shape == (36, 25, 9)  # arm and block: the goal is hidden
    # SAC experts: one checkpoint for every target, or one per target in a directory.
    _save_actor(tmp_path / 'expert.pt', 6, 3)
    sac = default_config('panda_reach', tasks_per_env=1, eval_tasks_per_env=0,
                         expert_episodes=1, cross_episodes=1, random_episodes=0,
                         episode_steps=25, sac_experts=str(tmp_path / 'expert.pt'))
    collect(sac, tmp_path / 'sac', progress=False)
    assert load_dataset(tmp_path / 'sac').tasks['panda_reach/train/goal00'].actions.shape == (
        2, 25, 3)
    experts = tmp_path / 'experts'
    experts.mkdir()
    _save_actor(experts / 'train_goal00.pt', 6, 3, run_format=True)
    per_goal = default_config('panda_reach', tasks_per_env=1, eval_tasks_per_env=0,
                              expert_episodes=1, cross_episodes=1, random_episodes=0,
                              episode_steps=25, sac_experts=str(experts))
    with pytest.raises(CollectError, match=r'15 SAC expert checkpoint\(s\) missing: .*'
                                           r'train_goal01\.pt'):
        collect(per_goal, tmp_path / 'per_goal', progress=False)
    for goal in range(1, 16):
        _save_actor(experts / f'train_goal{goal:02d}.pt', 6, 3)
    collect(per_goal, tmp_path / 'per_goal', progress=False, overwrite=True)
    assert read_manifest(tmp_path / 'per_goal')['tasks'][0]['sources'] == {
        'cross_goal': 1, 'expert': 1}
    _save_actor(tmp_path / 'wrong.pt', 9, 3)
    wrong = default_config('panda_reach', tasks_per_env=1, eval_tasks_per_env=0,
                           expert_episodes=1, episode_steps=25,
                           sac_experts=str(tmp_path / 'wrong.pt'))
    with pytest.raises(CollectError, match='observations of 9'):
        collect(wrong, tmp_path / 'wrong', progress=False)


def test_cli_collects_summarizes_and_reports_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / 'pm'
    assert main(['collect', 'point_mass', '--out', str(out), '--tasks-per-env', '1',
                 '--eval-tasks-per-env', '0', '--expert-ep', '2', '--cross-ep', '1',
                 '--random-ep', '1', '--epsilon', '0.2', '0.5', '--workers', '1',
                 '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert '1 train + 0 eval tasks x 4 episodes' in printed and '20 segments' in printed
    config = read_manifest(out)['config']
    assert config['epsilon'] == [0.2, 0.5] and config['expert_episodes'] == 2
    assert main(['collect', '--info', str(out)]) == 0
    assert 'all 1 shards verified' in capsys.readouterr().out
    from pref_rl_learner.fewshot import collect_cli, collect_config

    assert collect_cli.FAMILIES == collect_config.FAMILIES
    assert main(['collect', 'metaworld', '--envs', 'window-close-v3', '--out',
                 str(tmp_path / 'mw')]) == 2
    assert 'evaluation task' in capsys.readouterr().err
    assert main(['collect', '--info', str(tmp_path / 'none')]) == 2
