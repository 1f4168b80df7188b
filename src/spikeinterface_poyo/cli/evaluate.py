"""``spikeinterface-poyo evaluate``: R² of a saved decoder (bits per spike of an MtM model) on the
held-out end of a file."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_decoding_options, fraction, progress, training_end

HELP = "print R² (or MtM's bits per spike) on held-out data"
DESCRIPTION = """Score a saved model on the last --test-fraction of a behavioural series.

Decodes at the series' own timestamps and prints R² per dimension and their mean. Nothing is
written. When the model was trained on this file, only time after its training data is scored
(a warning says when --test-fraction reached into it).

An MtM model (masked modelling) is scored in bits per spike on the last --test-fraction of the
recording, on co-smoothing, forward prediction and, with two regions or more, inter- and
intra-region prediction; with --behavior, the series is also decoded from the inferred rates by
a cross-validated ridge (trained on the rest of the time) and its R² printed.

examples:
  spikeinterface-poyo evaluate session.nwb --model decoder/ --behavior hand_velocity --test-fraction 0.3
  spikeinterface-poyo evaluate session.nwb --model mtm_model/"""


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with the true behaviour")
    parser.add_argument("--model", required=True, metavar="MODEL", help="saved model folder (or a shipped name)")
    parser.add_argument(
        "--behavior", metavar="NAME", help="true behavioural series (name or path); needed for behaviour decoders"
    )
    parser.add_argument("--trials", action="store_true", help="MtM: windows around the trials table's start times")
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

    if not args.session.is_file():
        raise FileNotFoundError(f"No NWB file at {args.session}.")
    model = load_model(args.model, device=args.device)
    if model.family == "mtm":
        return run_mtm(args, model)
    if args.behavior is None:
        raise ValueError(f"Name the true behavioural series with --behavior to score a {model.family!r} decoder.")
    sorting, behavior = load_nwb_session(args.session, behavior=args.behavior)
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
    context = model.fitted_decoder().context
    print(
        f"{behavior.name}: {test.end_time - test.start_time:.1f} s held out ({len(test)} samples)"
        + (f"; {context} context" if context else "")
    )
    for name, r2 in zip(test.dimension_names, score["r2"]):
        print(f"R² {name}: {r2:.4f}")
    print(f"R² mean: {score['mean']:.4f}")


def run_mtm(args, model) -> None:
    """Bits per spike of an MtM model on the file's held-out windows (and R² from its rates)."""
    from ..io.nwb_read import read_nwb_behavior, read_nwb_trials, read_nwb_units
    from ..models.mtm import decode_from_rates, evaluate_mtm, infer_rates

    sorting = read_nwb_units(args.session)
    events = read_nwb_trials(args.session) if args.trials else None
    scores = evaluate_mtm(model, sorting, args.session_id, events=events, test_fraction=args.test_fraction)
    print(f"{args.session.name}: {scores['windows']} held-out windows (last {args.test_fraction:.0%})")
    for task, score in scores.items():
        if task in ("prompts", "windows"):
            continue
        if "mean" in score:
            pooled = f"pooled {score['pooled']:.4f}; prompt {scores['prompts'][task]}"
            print(f"{task}: {score['mean']:.4f} bits/spike ({pooled})")
        else:
            regions = ", ".join(f"{name} {value['mean']:.4f}" for name, value in score.items())
            print(f"{task}: {regions} bits/spike (prompt {scores['prompts'][task]})")
    if args.behavior is not None:
        behavior = read_nwb_behavior(args.session, args.behavior)
        rates = infer_rates(sorting, model, args.session_id, progress_bar=progress())
        score = decode_from_rates(rates, behavior, train_fraction=1 - args.test_fraction)
        print(f"{behavior.name} from the inferred rates (ridge): R² mean {score['mean']:.4f}")
