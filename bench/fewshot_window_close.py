"""Few-shot benchmark on MetaWorld window-close-v3, one hidden variation a run.

The harder MetaWorld headline: on door-close (bench/fewshot_metaworld.py) the random-label
control succeeded, so that task was too easy for the prior. Window-close is the paper's other
MetaWorld human-feedback task and is never in the pretraining data (ML10 trains on
window-open-v3). Everything but the env is bench/fewshot_metaworld.py's: the same reduced
ML10 training set and prior (made by whichever of the two runs first), an evaluation-only set
of window-close's first 2 test variations (the prior's accuracy there before any label), then
``config/sweeps/headline_window_close.json`` (2 held-out variations x 1 seed, every arm and
control, 20k env steps, 32 queries, 8 a session every 5000 steps).

Run: scripts/bench fewshot_window_close (about 40 minutes on 2 cores; resumes; --quick: a
smoke test).
"""

import dataclasses

from _fewshot_headline import main
from fewshot_metaworld import HEADLINE as DOOR_CLOSE

_DOOR_CLOSE_NOTE = '(door-close is never in it)'
assert _DOOR_CLOSE_NOTE in DOOR_CLOSE.notes, 'the notes below would still name door-close'

HEADLINE = dataclasses.replace(
    DOOR_CLOSE, name='fewshot_window_close', eval_collect_args=('--envs', 'window-close-v3'),
    eval_dataset='metaworld_small_window_close_eval', sweep='headline_window_close.json',
    title='MetaWorld window-close-v3 (never in pretraining), one hidden variation per run',
    notes=DOOR_CLOSE.notes.replace(_DOOR_CLOSE_NOTE, '(window-close is never in it)'))

if __name__ == '__main__':
    main(HEADLINE, __doc__)
