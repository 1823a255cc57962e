"""The setup is idempotent: with nothing changed, a second run skips every step."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_second_bootstrap_run_skips_every_step():
    # The test command has just run bootstrap, so this is at least the second run.
    result = subprocess.run([str(ROOT / 'scripts' / 'bootstrap')], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if '[setup]' in line]
    assert len(steps) == 1 and 'ready' in steps[0], result.stdout
    assert (ROOT / '.venv' / '.pref_rl_requirements').is_file()
    assert (ROOT / 'install' / 'setup.bash').is_file()
