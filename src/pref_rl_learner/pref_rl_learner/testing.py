"""Test data for pref-rl's own tests and benchmarks, and for code built on it (ROS-free)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pref_rl_learner.types import Segment


def make_segment(length: int = 25, obs_dim: int = 39, act_dim: int = 4,
                 with_frames: bool = False, seed: int = 0, **overrides) -> Segment:
    """A valid random segment; ``with_frames`` attaches 64x64x3 frames at stride 1."""
    rng = np.random.default_rng(seed)
    fields = dict(
        segment_id=f'seg-{seed}', task='point_mass', source_id='robot', episode=3,
        start_step=50, policy_version=7, stamp_ns=1_700_000_000_123_456_789,
        observations=rng.normal(size=(length, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (length, act_dim)).astype(np.float32),
        next_observations=rng.normal(size=(length, obs_dim)).astype(np.float32),
        rewards=rng.normal(size=length).astype(np.float32),
        terminated=np.zeros(length, bool),
        truncated=np.arange(length) == length - 1,
        success=rng.uniform(size=length) > 0.5,
    )
    if with_frames:
        fields.update(frames=rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8),
                      frame_stride=1)
    fields.update(overrides)
    return Segment(**fields)


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != 'Z'


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch intra-op thread (reproducible figures, no oversubscription
    of a 2-core machine), then restore the previous count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def maml_meta_gradient_by_loop(maml, supports, queries) -> tuple[float, float]:
    """The MAML outer step's gradient as pretraining computed it before tasks were batched
    (the reference the batched :meth:`~pref_rl_learner.fewshot.maml.MAML.meta_batch_loss` is
    tested and benchmarked against): task after task, the per-task meta-loss through
    :meth:`~pref_rl_learner.fewshot.maml.MAML.meta_loss` (members through the ensemble's
    own kernel), its backward accumulated into ``.grad`` scaled by 1/T, and the figures read
    back per task. Returns (mean query loss per member, mean query accuracy)."""
    from pref_rl_learner.fewshot.maml import pair_accuracy

    losses, accuracies = [], []
    for support, query in zip(supports, queries, strict=True):
        loss, logits = maml.meta_loss(support, query)
        (loss / len(supports)).backward()  # one graph at a time: memory of one task
        losses.append(float(loss.detach()) / maml.model.ensemble_size)
        accuracies.append(pair_accuracy(logits, query.targets))
    return float(np.mean(losses)), float(np.nanmean(accuracies))


def fewshot_adaptation_by_loop(trainer, train) -> tuple[dict, int, list[float]]:
    """Few-shot adaptation as :class:`~pref_rl_learner.fewshot.adapt.FewShotTrainer` ran it
    before the members were batched (the reference the batched adaptation is tested and
    benchmarked against): from θ, epochs of :meth:`~pref_rl_learner.fewshot.maml.MAML.
    autograd_step` (autograd through the whole ensemble) over the trainer's minibatch order,
    after every epoch a finiteness check of each weight and each member's accuracy read back
    one by one, until every member reaches the target (at least ``adapt_min_steps``, at most
    ``adapt_max_steps`` epochs). Draws from ``trainer.generator`` as the trainer does.
    Returns (adapted weights, epochs, each member's accuracy); divergence is not handled."""
    import torch

    from pref_rl_learner.reward.training import PairTensors, pair_tensors

    maml, config, model = trainer.maml, trainer.config, trainer.model
    data = pair_tensors(model, train, 'train')
    decisive = data.targets != 0.5

    def accuracy(params) -> list[float]:
        with torch.no_grad(), model.evaluating():
            logits = maml.pair_logits(params, data)
        hits = ((logits > 0) == (data.targets > 0.5)) & decisive
        return [float(hits[m].sum()) / float(decisive.sum()) for m in range(logits.shape[0])]

    params = {n: t.detach().clone() for n, t in trainer.meta_init.items()}
    member_acc, steps = accuracy(params), 0
    count, batch = data.targets.shape[0], trainer.training.batch_size
    while steps < config.adapt_max_steps:
        if steps >= config.adapt_min_steps and min(member_acc) >= config.target_accuracy:
            break
        model.train()
        order = torch.randperm(count, generator=trainer.generator).to(data.targets.device)
        for begin in range(0, count, batch):
            index = order[begin:begin + batch]
            params = maml.autograd_step(params, PairTensors(
                data.observations[index], data.actions[index], data.targets[index]))
        assert all(bool(torch.isfinite(p).all()) for p in params.values())
        steps, member_acc = steps + 1, accuracy(params)
    return params, steps, member_acc
