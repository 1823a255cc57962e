"""Killing the agent process (SIGKILL) leaves no DRLHP worker behind, within the 2 s the docs
promise, and nothing to warn about: no semaphore left to the resource tracker, no abort."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ORPHAN_BOUND_S = 2.0
"""The docs' promise (pref_rl_learner.drlhp.worker.ORPHAN_GRACE_S and the parent check)."""

AGENT = textwrap.dedent('''
    import sys
    import numpy as np
    from pref_rl_learner.drlhp import DrlhpConfig, PreferenceRewardWrapper
    from pref_rl_learner.reward import RewardModelConfig
    from pref_rl_robot.tasks import make_task

    def main():
        config = DrlhpConfig(segment_length=10, store_fsync=False,
                             reward_model=RewardModelConfig(hidden_sizes=(16,), device='cpu'))
        env = PreferenceRewardWrapper(make_task('point_mass', seed=0), config, sys.argv[1])
        print(env.worker_pid, flush=True)
        env.reset(seed=0)
        while True:  # an agent stepping until it is killed
            _, _, terminated, truncated, _ = env.step(np.zeros(2))
            if terminated or truncated:
                env.reset()

    if __name__ == '__main__':
        main()
''')


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != 'Z'


def test_sigkill_of_the_agent_leaves_no_orphan_worker(tmp_path):
    script = tmp_path / 'agent.py'
    script.write_text(AGENT)
    agent = subprocess.Popen([sys.executable, str(script), str(tmp_path / 'run')],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker_pid = int(agent.stdout.readline())
        assert worker_pid != agent.pid and alive(worker_pid)
        time.sleep(0.5)  # let it step and send clips
        assert alive(worker_pid)
        killed = time.monotonic()
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        deadline = killed + 15
        while alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        gone_after = time.monotonic() - killed
        assert not alive(worker_pid), 'the worker outlived its agent'
        assert gone_after <= ORPHAN_BOUND_S, f'the orphan lived {gone_after:.2f} s'
        # The worker and the parent's resource tracker held the agent's stderr: both are gone.
        _, errors = agent.communicate(timeout=15)
        assert 'leaked semaphore' not in errors, errors
        assert 'terminate called' not in errors, errors
    finally:
        agent.kill()
        agent.wait()
        agent.stdout.close()
        agent.stderr.close()
