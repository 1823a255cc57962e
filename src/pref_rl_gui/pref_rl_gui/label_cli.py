"""``pref-rl label``: label recorded segment pairs in the Qt app, without robot or learner.

Registered with :mod:`pref_rl_learner.cli` through the ``pref_rl.commands`` entry point; Qt
is imported only when the command runs. See :mod:`pref_rl_gui.standalone` for what is
labelled and written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label`` sub-command."""
    p = subparsers.add_parser(
        'label', help='label recorded segment pairs in the Qt labelling app (no robot or '
                      'learner needed)',
        description='Show the queries recorded in the bags (or random pairs of recorded '
                    'segments) in the labelling window: <- / A left, -> / D right, down / S '
                    'equal, I incomparable, Space / K skip, R replay, P pause, U / Ctrl+Z '
                    'undo. Every label is fsynced to OUT/preferences (a preference store; a '
                    'second run resumes) and, when the window closes, OUT/bag holds the '
                    'labelled queries and labels for `pref-rl reward-train --bag OUT/bag`.')
    p.add_argument('--bag', type=Path, nargs='+', required=True, metavar='DIR',
                   help='recorded bags (directories or .mcap files)')
    p.add_argument('--out', type=Path, required=True, metavar='DIR',
                   help='output directory: preferences/, outbox/, bag/')
    p.add_argument('--labeler-id', default='',
                   help='written into every label (default: the login name)')
    p.add_argument('--pairs', type=int, default=0, metavar='N',
                   help='label N random pairs of recorded segments instead of the recorded '
                        'queries (default: the queries; 100 pairs when the bags hold none)')
    p.add_argument('--seed', type=int, default=0, help='seed of the random pairs')
    p.add_argument('--relabel', action='store_true',
                   help='also show recorded queries the bags already hold a label for (train '
                        'on OUT/bag alone then: the old and new labels would conflict)')
    p.add_argument('--export-only', action='store_true',
                   help='only rewrite OUT/bag from the labels in OUT/preferences')
    p.set_defaults(handler=_cmd_label)


def _cmd_label(args: argparse.Namespace) -> int:
    from pref_rl_gui.config import LabelerConfig
    from pref_rl_gui.standalone import (
        BAG_DIR,
        STORE_DIR,
        LabellingSet,
        StandaloneError,
        StandaloneSession,
        export_bag,
        load_labelling_set,
    )
    from pref_rl_learner.preferences import PreferenceStore

    if args.pairs < 0:
        raise StandaloneError(f'--pairs {args.pairs} must be >= 0')
    if args.export_only:
        with PreferenceStore.open(args.out / STORE_DIR) as store:
            bag = export_bag(store, args.out / BAG_DIR)
            print(f'{store.counts()["labelled"]} labelled queries written to {bag}')
        return 0
    labelling: LabellingSet = load_labelling_set(args.bag, pairs=args.pairs, seed=args.seed,
                                                 relabel=args.relabel)
    session = StandaloneSession(args.out, labelling, LabelerConfig(labeler_id=args.labeler_id))
    model = session.model
    print(f'{len(labelling.queries)} pair(s) to label ({labelling.recorded} recorded queries, '
          f'{labelling.already_labelled} already labelled in the bags, {labelling.formed} '
          f'formed from segments); {model.queue_count + (model.current is not None)} not '
          f'labelled yet; labelling as {model.labeler_id}')
    try:
        from pref_rl_gui.widgets.app import run_standalone

        run_standalone(session)
    finally:
        bag = session.close()
    counts = session.store.counts()
    print(f'{counts["labelled"]} of {counts["queries"]} pairs labelled ({counts["left"]} left, '
          f'{counts["right"]} right, {counts["equal"]} equal, {counts["incomparable"]} '
          f'incomparable, {counts["skip"]} skip) in {args.out / STORE_DIR}')
    print(f'bag for reward training: {bag}\n'
          f'  pref-rl reward-train --bag {bag} --out {args.out / "reward_model.pt"}')
    return 0
