"""``spikeinterface-poyo evaluate``: R² of a saved model on the held-out end of a file."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_decoding_options, fraction, progress, training_end

HELP = "print R² on held-out data"
DESCRIPTION = """Score a saved model on the last --test-fraction of a behavioural series.

Decodes at the series' own timestamps and prints R² per dimension and their mean. Nothing is
written. When the model was trained on this file, only time after its training data is scored
(a warning says when --test-fraction reached into it).

example:
  spikeinterface-poyo evaluate session.nwb --model decoder/ --behavior hand_velocity --test-fraction 0.3"""


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with the true behaviour")
    parser.add_argument("--model", required=True, metavar="MODEL", help="saved model folder (or a shipped name)")
    parser.add_argument("--behavior", required=True, metavar="NAME", help="true behavioural series (name or path)")
    parser.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.3,
        help="last fraction of the behaviour's time span to score (default: 0.3)",
    )
    add_decoding_options(parser)


def run(args) -> None:
    from ..core.metrics import r2_score
    from ..io.nwb_read import load_nwb_session
    from ..models.decoding import decode_behavior
    from ..models.registry import load_model

    sorting, behavior = load_nwb_session(args.session, behavior=args.behavior)
    model = load_model(args.model, device=args.device)
    test = behavior.split(1 - args.test_fraction)[1] if args.test_fraction < 1 else behavior
    end = training_end(model, args.session)
    if end is not None and test.start_time < end:
        print(
            f"warning: the last {args.test_fraction:.0%} reaches into the model's training data; scoring only "
            f"the time after it (from {end:.1f} s)",
            file=sys.stderr,
        )
        test = test.time_slice(end, None)
        if len(test) < 2:
            raise ValueError(f"{args.session.name} holds no behaviour after the model's training data to score.")
    predicted = decode_behavior(
        sorting,
        model,
        timestamps=test.timestamps,
        session_id=args.session_id,
        batch_size=args.batch_size,
        n_jobs=args.n_jobs,
        progress_bar=progress(),
    )
    score = r2_score(test, predicted)
    print(f"{behavior.name}: {test.end_time - test.start_time:.1f} s held out ({len(test)} samples)")
    for name, r2 in zip(test.dimension_names, score["r2"]):
        print(f"R² {name}: {r2:.4f}")
    print(f"R² mean: {score['mean']:.4f}")
