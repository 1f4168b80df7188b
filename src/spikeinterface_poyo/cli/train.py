"""``spikeinterface-poyo train``: train a decoder on one NWB file and save it as a model folder."""

from __future__ import annotations

from pathlib import Path

from .common import add_training_options, fraction, labelled_session, progress, record_training_data, training_fields

HELP = "train a decoder on an NWB file"
DESCRIPTION = """Train a decoder on one NWB file and save it as a model folder.

The spikes come from the file's units table, the target from the named behavioural series
(looked up in processing modules, Position / BehavioralTimeSeries containers and acquisition).
Only the first --train-fraction of the behaviour's time span is used, so the rest can be scored
with `evaluate` and `decode`. --family picks POYO (default), a baseline (wiener, mlp, gru) or EIT.
--context causal trains a POYO model whose every prediction comes from the spikes before it (for
closed-loop use; the baselines are causal already).

example:
  spikeinterface-poyo train session.nwb --behavior hand_velocity --output decoder/ --preset small"""

FAMILIES = ("poyo", "wiener", "mlp", "gru", "eit")


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table and behaviour")
    parser.add_argument("--behavior", required=True, metavar="NAME", help="behavioural series to decode (name or path)")
    parser.add_argument("--output", required=True, type=Path, metavar="MODEL_DIR", help="folder to save the model in")
    parser.add_argument("--family", choices=FAMILIES, default="poyo", help="model family (default: poyo)")
    parser.add_argument("--preset", default="small", help="POYO architecture: tiny, small, ... (default: small)")
    parser.add_argument("--session-id", metavar="ID", help="name of the session (default: the file name)")
    parser.add_argument(
        "--train-fraction",
        type=fraction,
        default=0.7,
        help="first fraction of the behaviour's time span to train on (default: 0.7)",
    )
    parser.add_argument(
        "--context",
        choices=("centred", "causal"),
        help="POYO: windows centred on each time (default) or ending at it (causal)",
    )
    add_training_options(parser)


def build(args, sorting, behavior, session_id: str):
    """Train the chosen family; returns the fitted model."""
    from ..models.baselines import GRUDecoder, MLPDecoder, WienerFilter
    from ..models.eit import EITDecoder
    from ..models.poyo import train_decoder

    context = getattr(args, "context", None)
    if context is not None and args.family != "poyo":
        raise ValueError(f"--context applies to POYO; the {args.family} baseline decodes causally by construction.")
    if args.family == "poyo":
        return train_decoder(
            sorting,
            behavior,
            preset=args.preset,
            session_id=session_id,
            context=context or "centred",
            progress_bar=progress(),
            **training_fields(args),
        )
    if args.family == "wiener":
        return WienerFilter(session_id=session_id).fit(sorting, behavior)
    cls = {"mlp": MLPDecoder, "gru": GRUDecoder, "eit": EITDecoder}[args.family]
    return cls(**training_fields(args), session_id=session_id).fit(sorting, behavior)


def run(args) -> None:
    from ..models.registry import save_model

    sorting, behavior, session_id = labelled_session(args)
    model = build(args, sorting, behavior, session_id)
    record_training_data(model, args.session, behavior)
    save_model(model, args.output)
    record = model.fitted_decoder().meta["training"]
    best = record.get("best_val_r2")
    detail = (
        f" in {record['train_time_s']:.1f} s ({record['epochs']} epochs); best validation R² {best:.3f}" if best else ""
    )
    context = model.fitted_decoder().context
    print(
        f"Trained {args.family}{f' ({context} context)' if context else ''} on "
        f"{behavior.end_time - behavior.start_time:.1f} s of {behavior.name!r} from "
        f"{args.session.name} as session {session_id!r}{detail}. Saved to {args.output}"
    )
