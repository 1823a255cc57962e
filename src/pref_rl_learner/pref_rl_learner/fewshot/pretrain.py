"""MAML meta-training of the reward ensemble on a multi-task dataset (``pref-rl pretrain``).

Few-shot preference learning (Hejna & Sadigh, CoRL 2022, https://arxiv.org/abs/2212.03363,
Sec. 4 and App. B): every outer step draws ``tasks_per_batch`` training tasks; from each, a
support set and a query set of segment pairs, labelled by the scripted teacher from the task's
true rewards; the ensemble adapts on the support set with the learned inner learning rates
(:class:`~pref_rl_learner.fewshot.maml.MAML`) and the query loss of the adapted weights,
averaged over the tasks, is minimised by Adam over θ and α.

No held-out target may reach the prior: a dataset holding ``eval`` tasks is refused, and the
checkpoint is chosen on ``holdout_tasks`` *training* targets kept out of meta-training (the
validation targets). Every ``eval_interval`` steps the post-adaptation accuracy on them is
measured on fixed support/query draws; the best checkpoint by that accuracy is
``best_model.pt`` and the latest ``last_model.pt`` (:mod:`.meta_checkpoint`; both load with
:func:`~pref_rl_learner.offline_reward.load_reward_model`). Curves go to ``train.csv`` /
``eval.csv`` and ``curves.png``. Samples of step ``k`` come from a generator seeded with
``(seed, k)`` (and torch's global generator, for dropout, is seeded from them), so a
pretraining resumed from ``last_model.pt`` draws what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pref_rl_learner.config import ConfigError, load_yaml_config
from pref_rl_learner.fewshot.dataset import MultiTaskDataset
from pref_rl_learner.fewshot.maml import MAML, MAMLConfig, pair_accuracy
from pref_rl_learner.fewshot.meta_checkpoint import read_pretrain_state, save_meta_checkpoint
from pref_rl_learner.fewshot.task_pairs import PretrainError, TaskPairSampler
from pref_rl_learner.host_memory import retain_freed_memory
from pref_rl_learner.reward.ensemble import RewardEnsemble, RewardModelConfig
from pref_rl_learner.reward.training import PairTensors
from pref_rl_learner.run_log import RunLog
from pref_rl_learner.teacher import TeacherConfig

BEST_NAME = 'best_model.pt'
LAST_NAME = 'last_model.pt'
CONFIG_NAME = 'pretrain_config.yaml'
NORMALIZER_STEPS = 10_000
"""Transitions of the training tasks the saved reward normalisation is fitted on."""


@dataclass(frozen=True)
class PretrainConfig:
    """``pref-rl pretrain`` settings (defaults: the paper's point-mass/reacher values)."""

    seed: int = 0
    """Seeds the weights, the task/segment draws and the teacher."""
    steps: int = 100_000
    """Outer (meta) steps (paper: 100k; 200k for MetaWorld)."""
    tasks_per_batch: int = 4
    """Training tasks per outer step (paper: 4)."""
    support_pairs: int = 24
    """Labelled pairs per task to adapt on (paper: 24 point mass/reacher, 32 MetaWorld)."""
    query_pairs: int = 24
    """Labelled pairs per task the adapted model is scored on (paper: as support)."""
    segment_length: int = 0
    """Steps per segment; 0 uses the dataset's; a shorter length crops a random window of
    every drawn segment (e.g. 10 for point mass from longer recorded segments)."""
    outer_lr: float = 1e-4
    """Adam learning rate of θ and α (paper: 1e-4)."""
    outer_lr_schedule: str = 'constant'
    """``constant`` (paper) or ``cosine``: anneal from ``outer_lr`` to ``outer_lr_final``
    over ``steps`` (a short CPU run gets a high rate early and a precise reward late)."""
    outer_lr_final: float = 1e-5
    """The cosine schedule's learning rate at the last step."""
    grad_clip: float = 0.0
    """Clip the outer gradient to this global norm; 0 disables."""
    eval_interval: int = 1000
    """Outer steps between evaluations on the validation tasks (and ``last_model.pt``); a
    multiple of ``log_interval``."""
    eval_draws: int = 4
    """Fixed support/query draws per validation task averaged by an evaluation."""
    holdout_tasks: int = 2
    """Training tasks (seeded choice) kept out of meta-training to choose the checkpoint on
    (0: none; the last checkpoint is the best)."""
    log_interval: int = 100
    """Outer steps averaged into one ``train.csv`` row."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """Scripted teacher labelling the pairs (oracle by default, as in the paper)."""
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    """Inner loop: steps, initial α, learned α, first order."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Architecture of the ensemble; must equal ``reward_model`` of the train configs that
    load the result (point mass: ``inputs: state``, 3×128)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ('steps', 'tasks_per_batch', 'support_pairs', 'query_pairs',
                    'eval_interval', 'eval_draws', 'log_interval'):
            if getattr(self, key) < 1:
                raise ConfigError(f'{name}.{key} must be >= 1, got {getattr(self, key)}')
        for key in ('segment_length', 'holdout_tasks'):
            if getattr(self, key) < 0:
                raise ConfigError(f'{name}.{key} must be >= 0, got {getattr(self, key)}')
        if self.eval_interval % self.log_interval:
            raise ConfigError(f'{name}.eval_interval ({self.eval_interval}) must be a multiple '
                              f'of log_interval ({self.log_interval}): a pretraining resumed '
                              'from last_model.pt then logs the rows an uninterrupted one does')
        if not (math.isfinite(self.outer_lr) and self.outer_lr > 0):
            raise ConfigError(f'{name}.outer_lr must be > 0, got {self.outer_lr}')
        if self.outer_lr_schedule not in ('constant', 'cosine'):
            raise ConfigError(f"{name}.outer_lr_schedule must be 'constant' or 'cosine', "
                              f'got {self.outer_lr_schedule!r}')
        if not (math.isfinite(self.outer_lr_final) and 0 < self.outer_lr_final
                <= self.outer_lr):
            raise ConfigError(f'{name}.outer_lr_final must be in (0, outer_lr], '
                              f'got {self.outer_lr_final}')
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ConfigError(f'{name}.grad_clip must be >= 0, got {self.grad_clip}')


def outer_lr_at(config: PretrainConfig, step: int) -> float:
    """The outer learning rate of outer step ``step`` (0-based): a function of the step
    alone, so a resumed run follows the schedule of an uninterrupted one."""
    if config.outer_lr_schedule == 'constant':
        return config.outer_lr
    progress = min(step / max(config.steps - 1, 1), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.outer_lr_final + (config.outer_lr - config.outer_lr_final) * cosine


@dataclass(frozen=True)
class PretrainResult:
    """Outcome of :func:`pretrain`."""

    steps: int
    """Outer steps done in total (a resumed run counts the earlier ones)."""
    best_accuracy: float
    """Best post-adaptation accuracy on the validation tasks."""
    best_step: int
    """Outer step of ``best_model.pt``."""
    best_path: Path
    last_path: Path
    eval_tasks: tuple[str, ...]
    """The validation task ids evaluated on."""
    seconds: float
    """Wall time of this call."""


def load_pretrain_config(path: str | Path | None,
                         overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """A :class:`PretrainConfig` from a YAML file (defaults when ``path`` is None) with dotted
    ``overrides`` (``maml.inner_steps: 3``) applied.

    Raises:
        ConfigError: unreadable YAML, an unknown key (named) or a bad value.
    """
    return load_yaml_config(PretrainConfig, path, overrides)


def split_tasks(dataset: MultiTaskDataset, config: PretrainConfig
                ) -> tuple[list[str], list[str]]:
    """(meta-training task ids, validation task ids), each sorted; both training targets.

    Raises:
        PretrainError: the dataset holds held-out (``eval``) targets, or no training task is
            left.
    """
    held_out = sorted(t for t in dataset.tasks if dataset.split.get(t) == 'eval')
    if held_out:
        raise PretrainError(
            f'the dataset holds {len(held_out)} held-out target task(s) ({held_out[0]}, ...): '
            'no held-out target may reach the prior, not even to choose a checkpoint; collect '
            'the pretraining set with --eval-tasks-per-env 0 (the default)')
    train = sorted(t for t in dataset.tasks if dataset.split.get(t, 'train') == 'train')
    held: list[str] = []
    if config.holdout_tasks:
        if len(train) <= config.holdout_tasks:
            raise PretrainError(f'the dataset has {len(train)} task(s): too few to keep '
                                f'{config.holdout_tasks} out for validation')
        rng = np.random.default_rng([config.seed, 7])
        chosen = set(rng.choice(train, config.holdout_tasks, replace=False).tolist())
        held, train = sorted(chosen), [t for t in train if t not in chosen]
    if not train:
        raise PretrainError('the dataset has no training task')
    return train, held


def pretrain(dataset: MultiTaskDataset, out_dir: str | Path, config: PretrainConfig,
             progress: Callable[[int, dict[str, float]], None] | None = None,
             resume: bool = False) -> PretrainResult:
    """Meta-train a reward ensemble on ``dataset``; checkpoints and curves go to ``out_dir``.

    Args:
        progress: called after every outer step with the step and current figures.
        resume: continue from ``out_dir/last_model.pt`` (written with the same config).

    Raises:
        PretrainError: unusable dataset (shapes differ between tasks, too few segments).
        CheckpointError: ``resume`` and ``last_model.pt`` is missing, corrupt or for another
            config.
    """
    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_ids, eval_ids = split_tasks(dataset, config)
    sampler = TaskPairSampler(dataset, config.segment_length, config.teacher)
    model = RewardEnsemble(sampler.observation_shape, sampler.action_dim, config.reward_model,
                           seed=config.seed)
    sampler.check_model(model)
    if model.device.type == 'cpu':
        retain_freed_memory()  # no page faults on each outer step's fresh activations
    maml = MAML(model, config.maml)
    optimizer = torch.optim.Adam(maml.meta_parameters(), lr=config.outer_lr)
    mapping = dataclasses.asdict(config)
    step, best_acc, best_step = 0, -math.inf, 0
    if resume:
        step, best_acc, best_step = _resume(out, maml, optimizer, mapping)
    log = RunLog(out, tensorboard=False, resume_step=step)  # drops rows of an earlier run
    eval_sets = [sampler.draw(task, np.random.default_rng([config.seed, 11, i, d]),
                              config.support_pairs, config.query_pairs)
                 for i, task in enumerate(eval_ids) for d in range(config.eval_draws)]
    window: dict[str, list[torch.Tensor]] = {'meta_loss': [], 'query_accuracy': []}
    figures: dict[str, float] = {}
    try:
        while step < config.steps:
            loss, accuracy = _outer_step(maml, optimizer, sampler, train_ids, config, step)
            step += 1
            window['meta_loss'].append(loss)
            window['query_accuracy'].append(accuracy)
            if step % config.log_interval == 0 or step == config.steps:
                row = {k: float(torch.stack(v).nanmean()) for k, v in window.items()}
                row['inner_lr_mean'] = _mean_inner_lr(maml)
                log.write('train', step, row)
                figures.update(row)
                window = {k: [] for k in window}
            if step % config.eval_interval == 0 or step == config.steps:
                post, pre = evaluate(maml, eval_sets)
                figures.update(eval_accuracy=post)
                # Without validation tasks (or a NaN score) the first/latest is kept.
                if not eval_sets or best_step == 0 or post > best_acc:
                    best_acc, best_step = post, step
                    _save(out / BEST_NAME, maml, sampler, config, mapping, step, post,
                          best_acc, best_step, None)
                log.write('eval', step, {'accuracy_post_adaptation': post,
                                         'accuracy_pre_adaptation': pre,
                                         'best_accuracy': best_acc})
                _save(out / LAST_NAME, maml, sampler, config, mapping, step, post, best_acc,
                      best_step, optimizer)
            if progress is not None:
                progress(step, figures)
    finally:
        log.close()
    plot_curves(out)
    return PretrainResult(step, best_acc, best_step, out / BEST_NAME, out / LAST_NAME,
                          tuple(eval_ids), time.monotonic() - started)


def draw_meta_batch(sampler: TaskPairSampler, train_ids: list[str], config: PretrainConfig,
                    step: int) -> tuple[list[PairTensors], list[PairTensors]]:
    """The support and query sets of outer step ``step`` (a function of the seed and the step
    alone: a resumed run draws what an uninterrupted one would)."""
    rng = np.random.default_rng([config.seed, step])
    tasks = rng.choice(len(train_ids), config.tasks_per_batch,
                       replace=len(train_ids) < config.tasks_per_batch)
    draws = [sampler.draw(train_ids[index], rng, config.support_pairs, config.query_pairs)
             for index in tasks]
    return [support for support, _ in draws], [query for _, query in draws]


def _outer_step(maml: MAML, optimizer: torch.optim.Optimizer, sampler: TaskPairSampler,
                train_ids: list[str], config: PretrainConfig, step: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One meta-batch: adapt on each task's support set, Adam on the mean query loss.

    Returns (mean query loss per member, mean query accuracy) as tensors: nothing is read
    back to Python per step.
    """
    supports, queries = draw_meta_batch(sampler, train_ids, config, step)
    torch.manual_seed(config.seed * 1_000_003 + step)  # dropout: a resumed run draws the same
    maml.model.train()
    for group in optimizer.param_groups:
        group['lr'] = outer_lr_at(config, step)
    optimizer.zero_grad(set_to_none=True)
    loss, accuracy = maml.meta_batch_loss(supports, queries)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(maml.meta_parameters(), config.grad_clip)
    optimizer.step()
    return loss.detach() / maml.model.ensemble_size, accuracy


def evaluate(maml: MAML, draws: list) -> tuple[float, float]:
    """(post-, pre-adaptation) accuracy of the ensemble mean on the query pairs of
    ``draws`` ((support, query) pairs), adapting ``inner_steps`` on each support set."""
    if not draws:
        return math.nan, math.nan
    post, pre = [], []
    with maml.model.evaluating():
        for support, query in draws:
            adapted = maml.adapt(support)
            with torch.no_grad():
                post.append(pair_accuracy(maml.pair_logits(adapted, query), query.targets))
                pre.append(pair_accuracy(maml.pair_logits(maml.initial_parameters(), query),
                                         query.targets))
    return float(np.nanmean(post)), float(np.nanmean(pre))


def _mean_inner_lr(maml: MAML) -> float:
    total = sum(float(t.detach().sum()) for t in maml.inner_lrs.values())
    return total / sum(t.numel() for t in maml.inner_lrs.values())


def _save(path: Path, maml: MAML, sampler: TaskPairSampler, config: PretrainConfig,
          mapping: dict[str, Any], step: int, accuracy: float, best_acc: float, best_step: int,
          optimizer: torch.optim.Optimizer | None) -> None:
    observations, actions = sampler.transitions(NORMALIZER_STEPS, config.seed)
    maml.model.fit_normalizer(observations, actions)
    info: dict[str, Any] = {'step': step, 'eval_accuracy': accuracy,
                            'best_accuracy': best_acc, 'best_step': best_step}
    if optimizer is not None:
        info['optimizer'] = optimizer.state_dict()
    save_meta_checkpoint(path, maml, seed=config.seed, pretrain_config=mapping, info=info)


def _resume(out: Path, maml: MAML, optimizer: torch.optim.Optimizer,
            mapping: dict[str, Any]) -> tuple[int, float, int]:
    from pref_rl_learner.checkpoint import CheckpointError

    path = out / LAST_NAME
    state = read_pretrain_state(path)
    if state.get('pretrain_config') != mapping:
        raise CheckpointError(f'{path}: written with a different pretrain config')
    try:
        maml.model.load_state_dict(state['model'])
        maml.load_state_dict(state['maml'])
        optimizer.load_state_dict(state['pretrain']['optimizer'])
        info = state['pretrain']
        return int(info['step']), float(info['best_accuracy']), int(info['best_step'])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path}: incomplete pretrain checkpoint: {err}') from None


def plot_curves(out: str | Path) -> Path | None:
    """``curves.png`` of the meta-training query accuracy and the held-out accuracies."""
    from pref_rl_learner.run_log import read_csv

    out = Path(out)
    if not (out / 'train.csv').exists():
        return None
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    train = read_csv(out / 'train.csv')
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(train['step'], train['query_accuracy'], label='train tasks, after adaptation')
    if (out / 'eval.csv').exists():
        ev = read_csv(out / 'eval.csv')
        ax.plot(ev['step'], ev['accuracy_post_adaptation'], marker='o',
                label='validation tasks, after adaptation')
        ax.plot(ev['step'], ev['accuracy_pre_adaptation'], marker='.', linestyle='--',
                label='validation tasks, before adaptation')
    ax.set_xlabel('outer step')
    ax.set_ylabel('preference accuracy (query pairs)')
    ax.set_title('MAML reward pretraining')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / 'curves.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
