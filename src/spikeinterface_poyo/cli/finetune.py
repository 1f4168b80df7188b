"""``spikeinterface-poyo finetune``: adapt a saved POYO model to a new recording's units."""

from __future__ import annotations

from pathlib import Path

from .common import add_training_options, fraction, labelled_session, progress, record_training_data, training_fields

HELP = "adapt a saved POYO model to a new recording"
DESCRIPTION = """Adapt a saved (or shipped) POYO model to the units of a new NWB file and save it.

unit_identification learns only the new units' and session's embeddings (POYO's recipe);
full trains every weight. Only the first --train-fraction of the behaviour is used.

example:
  spikeinterface-poyo finetune day2.nwb --model poyo_small_sim_hc --behavior hand_velocity --output day2_decoder/"""


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table and behaviour")
    parser.add_argument("--model", required=True, metavar="MODEL", help="saved POYO model folder or shipped name")
    parser.add_argument("--behavior", required=True, metavar="NAME", help="behavioural series (name or path)")
    parser.add_argument("--output", required=True, type=Path, metavar="MODEL_DIR", help="folder for the adapted model")
    parser.add_argument(
        "--mode", choices=("unit_identification", "full"), default="unit_identification", help="what to train"
    )
    parser.add_argument("--session-id", metavar="ID", help="name of the new session (default: the file name)")
    parser.add_argument("--train-fraction", type=fraction, default=0.7, help="labelled part (default: 0.7)")
    add_training_options(parser)


def run(args) -> None:
    from ..models.poyo import POYO, finetune
    from ..models.registry import load_model, save_model

    sorting, behavior, session_id = labelled_session(args)
    model = load_model(args.model, device=args.device)
    if not isinstance(model, POYO):
        raise ValueError(f"{args.model} holds a {type(model).__name__}; only POYO models can be finetuned.")
    finetune(
        model,
        sorting,
        behavior,
        args.mode,
        session_id=session_id,
        progress_bar=progress(),
        **training_fields(args),
    )
    record_training_data(model, args.session, behavior)
    save_model(model, args.output)
    stages = model.meta["training"]["finetuning"][-1]["stages"]
    best = stages[-1].get("best_val_r2", float("nan")) if stages else float("nan")
    print(
        f"Adapted {args.model} to {session_id!r} ({args.mode}); best validation R² {best:.3f}. Saved to {args.output}"
    )
