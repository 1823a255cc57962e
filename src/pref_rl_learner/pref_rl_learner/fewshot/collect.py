"""``pref-rl collect``: offline multi-task datasets of segments with true rewards.

One *task* is one target (point mass, reacher, Panda) or one variation of one environment
(MetaWorld): its env is made on that target, so the stored observations never show it. Its
episodes are cut into segments of the task's segment length and written as one shard
(:mod:`pref_rl_learner.fewshot.dataset`). Training tasks come from the training
targets/variations; held-out ones, collected only when asked for, give ``eval`` tasks of an
evaluation-only set (to measure a prior on; pretraining refuses them). What the episodes
are (few-shot preference learning, Hejna & Sadigh 2022, https://arxiv.org/abs/2212.03363):

* goal tasks (:mod:`.experts`): the scripted expert aimed at the task's goal with action
  noise (``expert``; noise levels cycle through ``epsilon``), the expert aimed at another
  goal of the same set (``cross_goal``), uniform random actions (``random``); an optional
  prefix of random actions scatters the start state (``init_noise``, Panda push).
* MetaWorld (the task suite's ``metaworld_behaviours``): ``expert``, ``cross_env``,
  ``within_env``, ``random``.

Tasks run in parallel worker processes (spawned, one thread each); a task's data depend only
on the seed and its id, never on the number of workers. The manifest is rewritten after every
finished task, so an interrupted collection resumes where it stopped when rerun with the
same settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pref_rl_learner.fewshot.collect_config import CollectConfig
from pref_rl_learner.fewshot.dataset import (
    MANIFEST,
    SHARD_DIR,
    DatasetError,
    TaskData,
    read_manifest,
    read_shard,
    save_task_shard,
    write_manifest,
)
from pref_rl_learner.fewshot.rollout import Behaviour, CollectError, cut_segments, run_episode
from pref_rl_learner.pebble.tasks import task_suite


@dataclass(frozen=True)
class TaskJob:
    """One task to collect: one shard."""

    task_id: str
    """Id in the dataset, ``<env>/<split>/goal<NN>`` or ``<env>/<split>/var<NN>``."""
    env_name: str
    """Registered task the episodes run in."""
    split: str
    """``train`` (training goal/variation) or ``eval`` (held-out one)."""
    goal_index: int
    """Index of the goal/variation in the split's goal set."""
    episodes: int
    """Episodes the task records (for the progress bar)."""


@dataclass(frozen=True)
class CollectReport:
    """What a collection did."""

    out: Path
    """Dataset directory."""
    tasks: int
    """Tasks in the dataset."""
    reused: int
    """Tasks kept from an interrupted earlier run of the same collection."""
    segments: int
    """Segments over all tasks."""
    seconds: float
    """Wall time of this run."""


def plan_jobs(config: CollectConfig) -> list[TaskJob]:
    """Every task of the collection ``config`` describes, training tasks first.

    Raises:
        CollectError: more tasks per env asked for than the goal sets hold, or MetaWorld
            environments that are evaluation tasks or unknown.
    """
    tasks = task_suite()
    if config.family == 'metaworld':
        # An evaluation-only set (no training variation) may hold evaluation envs: it
        # measures a prior on them, and pretraining refuses it.
        envs, kind = tasks.metaworld_check_envs(
            config.envs, held_out_only=config.tasks_per_env == 0), 'var'
    else:
        envs, kind = (config.family,), 'goal'
    jobs = []
    for split, wanted in (('train', config.tasks_per_env), ('eval', config.eval_tasks_per_env)):
        for env_name in envs:
            spec = tasks.task_spec(env_name)
            available = spec.num_train_goals if split == 'train' else spec.num_eval_goals
            count = available if wanted is None else wanted
            if count > available:
                raise CollectError(f'{env_name} has {available} {split} goals/variations, '
                                   f'{count} asked for')
            jobs += [TaskJob(f'{env_name}/{split}/{kind}{i:02d}', env_name, split, i,
                             config.episodes_per_task) for i in range(count)]
    if not jobs:
        raise CollectError('nothing to collect: no training and no eval tasks')
    if config.sac_experts is not None:
        _check_sac_experts(config, jobs)
    return jobs


def _check_sac_experts(config: CollectConfig, jobs: list[TaskJob]) -> None:
    """Refuse before collecting when an expert checkpoint a job will need is missing."""
    from pref_rl_learner.fewshot.experts import sac_expert_path

    spec = task_suite().task_spec(config.family)
    needed = set()
    for job in jobs:
        goals = spec.num_train_goals if job.split == 'train' else spec.num_eval_goals
        # Cross-goal episodes may aim at any goal of the split.
        needed |= {(job.split, i) for i in (range(goals) if config.cross_episodes
                                            else (job.goal_index,))}
    missing = sorted({str(sac_expert_path(config.sac_experts, split, i))
                      for split, i in needed
                      if not sac_expert_path(config.sac_experts, split, i).is_file()})
    if missing:
        raise CollectError(f'{len(missing)} SAC expert checkpoint(s) missing: '
                           + ', '.join(missing[:4]) + (', ...' if len(missing) > 4 else ''))


def collect(config: CollectConfig, out: str | Path, *, workers: int = 1,
            progress: bool = True, overwrite: bool = False) -> CollectReport:
    """Collect the dataset ``config`` describes into directory ``out``.

    Args:
        config: what to collect.
        out: dataset directory; an unfinished collection of the same ``config`` there is
            resumed (its verified shards are kept).
        workers: parallel processes (1: in this process).
        progress: show a progress bar (episodes).
        overwrite: replace a dataset (finished or not, any settings) already in ``out``.

    Raises:
        CollectError: bad settings, or ``out`` holds another dataset and not ``overwrite``.
    """
    start = time.monotonic()
    out = Path(out)
    jobs = plan_jobs(config)
    done = _prepare_output(out, config, overwrite)
    records = [done[job.task_id] for job in jobs if job.task_id in done]
    todo = [job for job in jobs if job.task_id not in done]
    header = {'family': config.family, 'config': _config_mapping(config)}
    write_manifest(out, records, complete=False, **header)
    from tqdm import tqdm

    with tqdm(total=sum(job.episodes for job in todo), unit='ep', disable=not progress,
              desc=f'collect {config.family}', dynamic_ncols=True) as bar:
        for record in _run_jobs(todo, config, out, workers, bar.update):
            records.append(record)
            write_manifest(out, records, complete=False, **header)
    seconds = time.monotonic() - start
    write_manifest(out, records, complete=True, **header, collect_seconds=round(seconds, 1))
    return CollectReport(out=out, tasks=len(records), reused=len(done),
                         segments=sum(r['num_segments'] for r in records), seconds=seconds)


def _config_mapping(config: CollectConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _prepare_output(out: Path, config: CollectConfig, overwrite: bool) -> dict[str, dict]:
    """Records of the verified shards of an unfinished run of ``config`` in ``out``."""
    if out.exists() and not out.is_dir():
        raise CollectError(f'{out} exists and is not a directory')
    if not (out / MANIFEST).exists():
        return {}
    if overwrite:
        (out / MANIFEST).unlink()
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
        return {}
    try:
        manifest = read_manifest(out)
    except DatasetError as err:
        raise CollectError(f'{err}; pass --overwrite to replace it') from err
    if manifest.get('complete'):
        raise CollectError(f'{out} already holds a finished dataset; pass --overwrite to '
                           'replace it')
    if manifest.get('config') != _config_mapping(config):
        raise CollectError(f'{out} holds an unfinished collection with other settings; rerun '
                           'it with those settings to resume, or pass --overwrite')
    done = {}
    for record in manifest['tasks']:
        with contextlib.suppress(DatasetError):  # a damaged shard is collected again
            read_shard(out, record)
            done[record['task_id']] = record
    return done


def _run_jobs(jobs: list[TaskJob], config: CollectConfig, out: Path, workers: int,
              on_episodes: Callable[[int], Any]) -> Iterator[dict[str, Any]]:
    """Run ``jobs``, yielding each shard's record as it is written."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield collect_task(job, config, out, lambda: on_episodes(1))
        return
    context = multiprocessing.get_context('spawn')
    episodes = context.Queue()
    with _single_threaded_children(), ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
            initargs=(episodes,)) as pool:
        try:
            pending = {pool.submit(_worker_task, job, config, str(out)) for job in jobs}
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                with contextlib.suppress(queue.Empty):
                    while True:
                        on_episodes(episodes.get_nowait())
                for future in finished:
                    yield future.result()  # re-raises a worker's error here
            with contextlib.suppress(queue.Empty):
                while True:
                    on_episodes(episodes.get(timeout=0.05))
        except BrokenProcessPool as err:
            pool.shutdown(wait=False, cancel_futures=True)
            raise CollectError(
                'a collection worker process died (out of memory, killed, or the script '
                "that started this process runs its code without an `if __name__ == "
                "'__main__':` guard, which spawned workers re-execute)") from err
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers inherit one-thread settings for BLAS/OpenMP (numpy, MuJoCo, torch)."""
    names = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, '1'))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_EPISODES_DONE: Any = None  # the worker's progress queue


def _init_worker(episodes: Any) -> None:
    global _EPISODES_DONE
    _EPISODES_DONE = episodes
    import logging

    # A collection worker reports through the progress bar and the manifest; warnings of the
    # tasks' own (e.g. the Panda's safety clamps at the workspace edge, expected with random
    # actions) would flood the terminal. Errors still show.
    logging.getLogger().setLevel(logging.ERROR)


def _worker_task(job: TaskJob, config: CollectConfig, out: str) -> dict[str, Any]:
    return collect_task(job, config, Path(out), lambda: _EPISODES_DONE.put(1))


def task_randomness(seed: int, task_id: str) -> tuple[int, np.random.Generator]:
    """(env seed, action generator) of task ``task_id``: a function of both only."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(task_id.encode())])
    env_seed, rng_seed = sequence.generate_state(2)
    return int(env_seed) & 0x7FFFFFFF, np.random.default_rng(int(rng_seed))


def collect_task(job: TaskJob, config: CollectConfig, out: Path,
                 on_episode: Callable[[], Any] = lambda: None) -> dict[str, Any]:
    """Record every episode of ``job``, write its shard and return the manifest record.

    Besides the shard's own entries the record holds ``goal_index``, ``goal`` (the goal, or
    MetaWorld's ``rand_vec``), ``episodes``, ``episode_steps`` and ``success_rate``: per
    source, the share of episodes in which ``info['success']`` held at some step.
    """
    tasks = task_suite()
    spec = tasks.task_spec(job.env_name)
    steps = config.episode_steps or spec.episode_length
    if not spec.segment_length <= steps <= spec.episode_length:
        raise CollectError(f'episode_steps {steps} must be in [{spec.segment_length}, '
                           f'{spec.episode_length}] for {job.env_name}')
    stride = config.segment_stride or spec.segment_length
    env_seed, rng = task_randomness(config.seed, job.task_id)
    env = tasks.make_task(job.env_name, goal=f'{job.split}:{job.goal_index}', seed=env_seed)
    try:
        env.reset(seed=env_seed)
        behaviours = _behaviours(job, config, env, rng, steps)
        parts, sources, successes = [], [], {}
        for behaviour in behaviours:
            episode = run_episode(env, behaviour, steps, rng)
            parts.append(cut_segments(episode, spec.segment_length, stride))
            sources += [behaviour.source] * len(parts[-1][2])
            successes.setdefault(behaviour.source, []).append(episode.success)
            on_episode()
        goal = np.asarray(env.unwrapped.goal, np.float64)
    finally:
        env.close()
    observations, actions, rewards = (np.concatenate(arrays) for arrays in zip(*parts,
                                                                                strict=True))
    task = TaskData(job.task_id, job.env_name, observations, actions, rewards,
                    np.array(sources, dtype=str))
    return save_task_shard(out, task, job.split, goal_index=job.goal_index,
                           goal=[round(float(v), 6) for v in goal], episodes=len(behaviours),
                           episode_steps=steps,
                           success_rate={k: round(float(np.mean(v)), 3)
                                         for k, v in sorted(successes.items())})


def _behaviours(job: TaskJob, config: CollectConfig, env: Any, rng: np.random.Generator,
                steps: int) -> list[Behaviour]:
    if config.family == 'metaworld':
        return task_suite().metaworld_behaviours(
            job.env_name, job.split, job.goal_index, env, expert_episodes=config.expert_episodes,
            cross_episodes=config.cross_episodes, within_episodes=config.within_episodes,
            random_episodes=config.random_episodes, epsilon=config.epsilon,
            noise_type=config.noise_type, rng=rng)
    return _goal_behaviours(job, config, env, rng, steps)


def _goal_behaviours(job: TaskJob, config: CollectConfig, env: Any, rng: np.random.Generator,
                     steps: int) -> list[Behaviour]:
    """Expert, cross-goal and random episodes of a goal task."""
    from pref_rl_learner.fewshot.experts import load_sac_expert, sac_expert_path

    tasks = task_suite()
    family, goals = config.family, tasks.goal_set(config.family, job.split)
    spec = tasks.task_spec(family)

    def expert_for(goal_index: int) -> Any:
        if config.sac_experts is None:
            return tasks.scripted_expert(family, goals[goal_index])
        return load_sac_expert(sac_expert_path(config.sac_experts, job.split, goal_index),
                               spec.observation_shape[0], spec.action_dim)

    def prefix() -> int:
        return int(rng.uniform(0.0, config.init_noise) * steps)

    own = expert_for(job.goal_index)
    epsilon, noise_type = config.epsilon, config.noise_type
    behaviours = [Behaviour('expert', own, epsilon[k % len(epsilon)], noise_type, prefix())
                  for k in range(config.expert_episodes)]
    experts: dict[int, Any] = {}
    for k in range(config.cross_episodes):
        other = int(rng.integers(len(goals) - 1))
        other += other >= job.goal_index  # any goal of the set but this one
        if other not in experts:
            experts[other] = expert_for(other)
        behaviours.append(Behaviour('cross_goal', experts[other], epsilon[k % len(epsilon)],
                                    noise_type, prefix()))
    return behaviours + [Behaviour('random', None)] * config.random_episodes
