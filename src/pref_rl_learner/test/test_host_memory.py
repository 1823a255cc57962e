"""Host allocator tuning: a SAC update's freed activations are reused without page faults."""

import platform
import subprocess
import sys

import pytest

from pref_rl_learner.host_memory import retain_freed_memory

FAULTS_PER_UPDATE = '''
import resource, sys, torch
import pref_rl_learner.host_memory as host_memory
from pref_rl_learner.batches import TransitionBatch
from pref_rl_learner.sac import SAC, SACConfig
torch.set_num_threads(1)
if sys.argv[1] == 'off':
    host_memory._tuned = False  # as if tuning were unavailable: glibc's defaults stay
agent = SAC(39, 4, SACConfig(hidden_sizes=(256, 256), batch_size=512, device='cpu'))
g = torch.Generator().manual_seed(0)
batch = TransitionBatch(torch.randn(512, 39, generator=g), torch.rand(512, 4, generator=g),
                        torch.randn(512, generator=g), torch.randn(512, 39, generator=g),
                        torch.zeros(512))
for _ in range(6):  # the heap grows to the update's working set
    agent.update(batch)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    agent.update(batch)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
'''


def faults_per_update(mode: str) -> float:
    out = subprocess.run([sys.executable, '-c', FAULTS_PER_UPDATE, mode], capture_output=True,
                         text=True, check=True, timeout=120)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc',
                    reason='glibc malloc tuning')
def test_sac_updates_stop_page_faulting_with_freed_memory_retained():
    assert retain_freed_memory() and retain_freed_memory()  # idempotent, True on glibc
    untuned = faults_per_update('off')
    # The kernel may reclaim idle pages of any process now and then (this machine runs a
    # DAMON reclaimer), which faults them back in: the least of three runs is the
    # allocator's own figure.
    tuned = min(faults_per_update('on') for _ in range(3))
    assert untuned > 100, untuned  # glibc's defaults: fresh pages for the activations
    assert tuned < untuned / 3, (tuned, untuned)
