"""Command line: train, evaluate and decode POYO models on NWB files.

    spikeinterface-poyo train SESSION.nwb --behavior hand_velocity --output decoder/
    spikeinterface-poyo evaluate SESSION.nwb --model decoder/ --behavior hand_velocity
    spikeinterface-poyo decode SESSION.nwb --model decoder/ --behavior hand_velocity
    spikeinterface-poyo pretrain --config corpus.toml
    torchrun --nproc_per_node 4 -m spikeinterface_poyo pretrain --config corpus.toml

Also ``python -m spikeinterface_poyo``. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "spikeinterface-poyo"
EXIT_ERROR = 2

TRAIN_HELP = """Train a POYO decoder on one NWB file and save it as a model folder.

The spikes come from the file's units table, the target from the named behavioural series
(looked up in processing modules, Position / BehavioralTimeSeries containers and acquisition).
Only the first --train-fraction of the behaviour's time span is used, so the rest can be scored
with `evaluate`.

example:
  spikeinterface-poyo train session.nwb --behavior hand_velocity --output decoder/ --preset small"""

EVALUATE_HELP = """Score a saved model on the last --test-fraction of a behavioural series.

Decodes at the series' own timestamps and prints R² per dimension and their mean. Nothing is
written. Keep --test-fraction <= 1 - the --train-fraction used for training, or the score
includes training data (a warning says so).

example:
  spikeinterface-poyo evaluate session.nwb --model decoder/ --behavior hand_velocity --test-fraction 0.3"""

DECODE_HELP = """Decode behaviour with a saved model and write it into the NWB file.

The predictions become a DecodedBehavior (ndx-poyo extension) in processing/behavior, with the
model's name, version, sha256, training sessions and preset. The file is replaced atomically
only after the written copy checks out; --output writes a new file and leaves SESSION.nwb as it
is. When the true behaviour is in the file, predictions are made at its timestamps and R² is
printed (and stored with the predictions).

examples:
  spikeinterface-poyo decode session.nwb --model decoder/ --behavior hand_velocity
  spikeinterface-poyo decode session.nwb --model decoder/ --output session_decoded.nwb"""


PRETRAIN_HELP = """Pretrain one model on many sessions described by a configuration file.

The file (.toml or .json) lists the sessions (NWB files with a behavioural series, or
simulated ones), the preset, the training options and where checkpoints go; sessions are
read only when training needs them. Run it as is for one process, or under torchrun for
data-parallel training (gloo on CPUs, NCCL on GPUs); rank 0 saves the model. With
[checkpoint] resume = true a killed run continues from its newest good checkpoint.

example corpus.toml:
  output = "pretrained/"
  preset = "small"
  [training]
  max_time_s = 3600
  [checkpoint]
  dir = "checkpoints/"
  resume = true
  [[sessions]]
  path = "monkey_a_day1.nwb"
  behavior = "hand_velocity"

examples:
  spikeinterface-poyo pretrain --config corpus.toml
  torchrun --nproc_per_node 4 -m spikeinterface_poyo pretrain --config corpus.toml"""


def _positive_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the ``train``, ``evaluate`` and ``decode`` subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="POYO neural decoding of behaviour from spike-sorted NWB files.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    train = commands.add_parser(
        "train", help="train a decoder on an NWB file", description=TRAIN_HELP, formatter_class=raw
    )
    train.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table and behaviour")
    train.add_argument("--behavior", required=True, metavar="NAME", help="behavioural series to decode (name or path)")
    train.add_argument("--output", required=True, type=Path, metavar="MODEL_DIR", help="folder to save the model in")
    train.add_argument("--preset", default="small", help="architecture preset: tiny, small, ... (default: small)")
    train.add_argument("--max-time-s", type=float, default=600.0, help="training time budget in seconds (default: 600)")
    train.add_argument("--max-epochs", type=int, default=60, help="length of the schedule in epochs (default: 60)")
    train.add_argument(
        "--train-fraction",
        type=_positive_fraction,
        default=0.7,
        help="first fraction of the behaviour's time span to train on (default: 0.7)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    evaluate = commands.add_parser(
        "evaluate", help="print R² on held-out data", description=EVALUATE_HELP, formatter_class=raw
    )
    evaluate.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with the true behaviour")
    evaluate.add_argument("--model", required=True, type=Path, metavar="MODEL", help="saved model folder")
    evaluate.add_argument("--behavior", required=True, metavar="NAME", help="true behavioural series (name or path)")
    evaluate.add_argument(
        "--test-fraction",
        type=_positive_fraction,
        default=0.3,
        help="last fraction of the behaviour's time span to score (default: 0.3)",
    )

    decode = commands.add_parser(
        "decode", help="decode and write predictions into the file", description=DECODE_HELP, formatter_class=raw
    )
    decode.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table")
    decode.add_argument("--model", required=True, type=Path, metavar="MODEL", help="saved model folder")
    decode.add_argument(
        "--behavior",
        metavar="NAME",
        help="true behavioural series: decode at its timestamps and print R² (default: the model's target, if present)",
    )
    decode.add_argument("--output", type=Path, metavar="COPY.nwb", help="write a new file instead of into SESSION.nwb")
    decode.add_argument("--name", help="name of the decoded series (default: decoded_<behaviour>)")
    decode.add_argument("--overwrite", action="store_true", help="replace a decoded series of the same name")

    pretrain = commands.add_parser(
        "pretrain", help="pretrain on many sessions from a config file", description=PRETRAIN_HELP, formatter_class=raw
    )
    pretrain.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="run configuration (.toml or .json)"
    )

    demo = commands.add_parser(
        "demo",
        help="end-to-end demo on a simulated session (no data needed)",
        description="Simulate a session of cosine-tuned units, write it to NWB, train POYO on the first 70 %%, "
        "decode the rest, write the predictions into the NWB file, save a plot and print R².",
    )
    demo.add_argument("--output", type=Path, default=Path("outputs/demo"), help="folder for the results")
    demo.add_argument("--preset", default="small", help="architecture preset (default: small)")
    demo.add_argument("--max-time-s", type=float, default=180.0, help="training time budget (default: 180)")
    demo.add_argument("--duration", type=float, default=600.0, help="simulated seconds (default: 600)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def _progress() -> bool:
    return sys.stderr.isatty()


def _format_r2(score: dict, names: list[str]) -> str:
    parts = [f"{n} {r:.3f}" for n, r in zip(names, score["r2"])]
    return f"R² mean {score['mean']:.3f} ({', '.join(parts)})"


def cmd_train(args) -> None:
    """Train on the first ``train_fraction`` of the behaviour and save the model."""
    from .checkpoint import CONFIG_FILE, save_model
    from .nwb import load_nwb_session
    from .training import train_decoder

    if args.output.exists() and not (args.output / CONFIG_FILE).is_file():
        # refuse before spending the training time, not after
        raise FileExistsError(f"{args.output} exists and is not a saved model; choose another --output.")
    sorting, behavior = load_nwb_session(args.session, behavior=args.behavior)
    if args.train_fraction < 1:
        behavior = behavior.split(args.train_fraction)[0]
    model = train_decoder(
        sorting,
        behavior,
        preset=args.preset,
        session_id=args.session.stem,
        seed=args.seed,
        max_epochs=args.max_epochs,
        max_time_s=args.max_time_s,
        progress_bar=_progress(),
    )
    # remembered so `evaluate` and `decode` can tell held-out data from training data
    model.meta["training"]["train_interval"] = [behavior.start_time, behavior.end_time]
    model.meta["training"]["source_file"] = args.session.name
    save_model(model, args.output)
    record = model.meta["training"]
    print(
        f"Trained {args.preset!r} on {record['train_seconds']:.1f} s of {behavior.name!r} from {args.session.name} "
        f"in {record['train_time_s']:.1f} s ({record['epochs']} epochs); best validation R² "
        f"{record['best_val_r2']:.3f}. Saved to {args.output}"
    )


def _overlaps_training(model, session: Path, start: float) -> bool:
    """True when ``model`` was trained on this file's behaviour after ``start``."""
    record = model.meta.get("training", {})
    interval = record.get("train_interval")
    return bool(interval) and record.get("source_file") == session.name and start < interval[1]


def cmd_evaluate(args) -> None:
    """Decode the last ``test_fraction`` of the behaviour and print R² per dimension."""
    from .checkpoint import load_model
    from .decoding import decode_behavior
    from .metrics import r2_score
    from .nwb import load_nwb_session

    sorting, behavior = load_nwb_session(args.session, behavior=args.behavior)
    model = load_model(args.model)
    test = behavior.split(1 - args.test_fraction)[1] if args.test_fraction < 1 else behavior
    if _overlaps_training(model, args.session, test.start_time):
        print(f"warning: the scored part overlaps the model's training data in {args.session.name}", file=sys.stderr)
    predicted = decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=_progress())
    score = r2_score(test, predicted)
    print(
        f"{behavior.name}: last {args.test_fraction:.0%} ({test.end_time - test.start_time:.1f} s, {len(test)} samples)"
    )
    for name, r2 in zip(test.dimension_names, score["r2"]):
        print(f"R² {name}: {r2:.4f}")
    print(f"R² mean: {score['mean']:.4f}")


def cmd_decode(args) -> None:
    """Decode, score against the true behaviour when present, and write the predictions."""
    from .behavior import list_nwb_behaviors, read_nwb_behavior
    from .checkpoint import load_model
    from .decoding import decode_behavior
    from .metrics import r2_score
    from .nwb import _check_existing, _read_sorting, _summarize, write_predictions_to_nwb

    if not args.session.is_file():
        raise FileNotFoundError(f"No NWB file at {args.session}.")
    model = load_model(args.model)
    target_name = args.behavior or model.meta.get("behavior", {}).get("name")
    name = args.name or f"decoded_{model.meta.get('behavior', {}).get('name', 'behavior')}"
    if args.output is None:  # a name that is taken fails now, not after decoding
        _check_existing(_summarize(args.session, name), name, args.overwrite, args.session)
    available = list_nwb_behaviors(args.session)
    has_truth = target_name is not None and (target_name in available or target_name in available.values())
    if args.behavior and not has_truth:
        raise ValueError(
            f"No behavioural series named {args.behavior!r} in {args.session.name}; it holds {sorted(available)}."
        )
    truth = read_nwb_behavior(args.session, target_name) if has_truth else None
    sorting = _read_sorting(args.session)
    timestamps = truth.timestamps if truth is not None else None
    predicted = decode_behavior(sorting, model, timestamps=timestamps, progress_bar=_progress())
    metrics = None
    if truth is not None:
        score = r2_score(truth, predicted)
        metrics = {**score, "scored_against": truth.name, "samples": "all"}
        print(f"{truth.name}, whole file: {_format_r2(score, truth.dimension_names)}")
        if _overlaps_training(model, args.session, truth.start_time):
            held_out = truth.timestamps >= model.meta["training"]["train_interval"][1]
            if held_out.sum() >= 2:
                held = r2_score(truth.values[held_out], predicted.values[held_out])
                metrics["held_out"] = {**held, "from_s": float(truth.timestamps[held_out][0])}
                print(f"{truth.name}, after the training data: {_format_r2(held, truth.dimension_names)}")
    written = write_predictions_to_nwb(
        args.session,
        predicted,
        model=model,
        name=name,
        overwrite=args.overwrite,
        metrics=metrics,
        model_path=args.model,
        output_path=args.output,
    )
    print(f"Wrote {name} ({len(predicted)} samples) to {written}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    summary = run_demo(
        args.output, duration=args.duration, preset=args.preset, max_time_s=args.max_time_s, seed=args.seed
    )
    print(f"NWB file with the predictions: {summary['nwb_file']}")
    print(f"model: {summary['model']}")
    print(f"plot: {summary['plot']}")
    r2 = ", ".join(f"{v:.3f}" for v in summary["r2"])
    print(f"R² on the held-out 30 %: {summary['r2_mean']:.3f} (x, y: {r2})")


def cmd_pretrain(args) -> None:
    """Pretrain on the sessions of a configuration file; rank 0 saves the model."""
    import os

    from .checkpoint import save_model
    from .run_config import read_config, resolve, session_sources
    from .training import pretrain

    config = read_config(args.config)
    checkpoint = config.get("checkpoint", {})
    model = pretrain(
        session_sources(config),
        config.get("preset", "small"),
        seed=config.get("seed", 0),
        max_sessions_in_memory=config.get("max_sessions_in_memory"),
        checkpoint_dir=resolve(config, checkpoint["dir"]) if "dir" in checkpoint else None,
        checkpoint_every=checkpoint.get("every"),
        resume=checkpoint.get("resume", False),
        progress_bar=_progress(),
        **config.get("training", {}),
        **config.get("model", {}),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        path = save_model(model, resolve(config, config["output"]))
        record = model.meta["training"]
        print(
            f"pretrained on {len(record['sessions'])} sessions with {record['world_size']} process(es): "
            f"{record['steps']} steps in {record['train_time_s']:.0f} s, best validation R² {record['best_val_r2']:.3f}"
        )
        print(f"model saved to {path}")


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "decode": cmd_decode,
    "pretrain": cmd_pretrain,
    "demo": cmd_demo,
}


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0, or 2 after an error)."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
