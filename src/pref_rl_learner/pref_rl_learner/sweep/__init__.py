"""Sweeps: JSON grids of ``pref-rl train`` runs, run locally (CPU/GPU-balanced) or on SLURM.

- :mod:`.grid`: sweep files, their expansion into runs and validation.
- :mod:`.runs`: a sweep's output directory (run records, finished runs, results table).
- :mod:`.local`: the local runner (CPU shares, GPUs round-robin, several runs per job).
- :mod:`.slurm`: submission through submitit (optional), several runs per allocation.
- :mod:`.cli`: the ``pref-rl sweep`` sub-command.
"""

from pref_rl_learner.sweep.grid import (
    SweepError,
    SweepRun,
    SweepSpec,
    expand_sweep,
    load_sweep,
    validate_runs,
)

__all__ = ['SweepError', 'SweepRun', 'SweepSpec', 'expand_sweep', 'load_sweep',
           'validate_runs']
