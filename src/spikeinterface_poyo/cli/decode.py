"""``spikeinterface-poyo decode``: decode with a saved model and write the predictions into NWB."""

from __future__ import annotations

from pathlib import Path

from .common import add_decoding_options, format_r2, progress, training_end

HELP = "decode and write predictions into the file"
DESCRIPTION = """Decode behaviour with a saved model and write it into the NWB file.

The predictions become a DecodedBehavior (ndx-poyo extension) in processing/behavior, with the
model's name, version, sha256, training sessions and preset. The file is replaced atomically
only after the written copy checks out; --output writes a new file and leaves SESSION.nwb as it
is; for large files (raw ephys) --storage companion (automatic above 2 GiB) writes
SESSION.poyo.nwb beside it instead, linking to its units, and never opens SESSION.nwb for writing.
The model must know the recording: the exact sorting it was trained on is recognised, any other
recording of a training session needs --session-id, and a recording it never saw is an
error (finetune the model first). When the true behaviour is in the file, predictions are made
at its timestamps, and R² on the held-out time (never the model's training data) is printed and
stored with the predictions.

examples:
  spikeinterface-poyo decode session.nwb --model decoder/ --behavior hand_velocity
  spikeinterface-poyo decode day2.nwb --model decoder/ --session-id day2 --output day2_decoded.nwb"""


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table")
    parser.add_argument("--model", required=True, metavar="MODEL", help="saved model folder (or a shipped name)")
    parser.add_argument(
        "--behavior",
        metavar="NAME",
        help="true behavioural series: decode at its timestamps and print R² (default: the model's target, if present)",
    )
    parser.add_argument("--output", type=Path, metavar="COPY.nwb", help="write a new file instead of into SESSION.nwb")
    parser.add_argument("--name", help="name of the decoded series (default: decoded_<behaviour>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a decoded series of the same name")
    parser.add_argument(
        "--storage",
        choices=("auto", "copy", "companion"),
        default="auto",
        help="copy: rewrite SESSION.nwb atomically; companion: write SESSION.poyo.nwb beside it, linking its "
        "units, SESSION.nwb never opened for writing; auto (default): companion for files over 2 GiB or when "
        "one exists",
    )
    parser.add_argument("--companion", type=Path, metavar="FILE.nwb", help="companion file to write (any storage)")
    add_decoding_options(parser)


def held_out_metrics(truth, predicted, end: float | None) -> dict | None:
    """R² on the time after the model's training data (all of it when the file did not train it)."""
    from ..core.metrics import r2_score

    keep = truth.timestamps >= end if end is not None else slice(None)
    values, decoded = truth.values[keep], predicted.values[keep]
    if len(values) < 2:
        return None
    score = r2_score(values, decoded)
    start = float(truth.timestamps[keep][0])
    return {**score, "scored_against": truth.name, "held_out_from_s": start, "samples": int(len(values))}


def run(args) -> None:
    from ..io.nwb_read import _read_sorting, list_nwb_behaviors, read_nwb_behavior
    from ..io.nwb_write import check_name_free, write_predictions_to_nwb
    from ..models.decoding import decode_behavior
    from ..models.registry import load_model

    if not args.session.is_file():
        raise FileNotFoundError(f"No NWB file at {args.session}.")
    model = load_model(args.model, device=args.device)
    described = model.behavior_description()
    target_name = args.behavior or described.get("name")
    name = args.name or f"decoded_{described.get('name', 'behavior')}"
    where = dict(storage=args.storage, companion_path=args.companion, output_path=args.output)
    check_name_free(args.session, name, args.overwrite, **where)  # a name that is taken fails now, not after decoding
    available = list_nwb_behaviors(args.session)
    has_truth = target_name is not None and (target_name in available or target_name in available.values())
    if args.behavior and not has_truth:
        raise ValueError(
            f"No behavioural series named {args.behavior!r} in {args.session.name}; it holds {sorted(available)}."
        )
    truth = read_nwb_behavior(args.session, target_name) if has_truth else None
    sorting = _read_sorting(args.session)
    predicted = decode_behavior(
        sorting,
        model,
        timestamps=truth.timestamps if truth is not None else None,
        session_id=args.session_id,
        batch_size=args.batch_size,
        n_jobs=args.n_jobs,
        progress_bar=progress(),
    )
    metrics = None
    if truth is not None:
        metrics = held_out_metrics(truth, predicted, training_end(model, args.session))
        if metrics is None:
            print(f"{truth.name}: every sample is training data; no R² is stored")
        else:
            score = format_r2(metrics, truth.dimension_names)
            context = model.fitted_decoder().context
            print(
                f"{truth.name}, held out from {metrics['held_out_from_s']:.1f} s: {score}"
                + (f"; {context} context" if context else "")
            )
    written = write_predictions_to_nwb(
        args.session,
        predicted,
        model=model,
        name=name,
        overwrite=args.overwrite,
        metrics=metrics,
        model_path=args.model if Path(args.model).exists() else None,
        **where,
    )
    print(f"Wrote {name} ({len(predicted)} samples) to {written}")
