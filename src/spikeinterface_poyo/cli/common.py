"""What the commands share: argument types and options, progress, R² formatting, and knowing
which part of a file a model was trained on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def n_jobs(text: str) -> float:
    value = float(text)
    if value == 0 or (value < 0 and value != -1):
        raise argparse.ArgumentTypeError(f"must be -1 (all cores), a positive count or a fraction of cores, got {text}")
    return int(value) if value.is_integer() else value


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """--session-id, --device, --batch-size and --n-jobs."""
    parser.add_argument(
        "--session-id",
        metavar="ID",
        help="which of the model's sessions this file is (needed unless it is the exact sorting the model was "
        "trained on; a model never decodes another recording silently)",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available, else the CPU)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default: 16)")
    parser.add_argument(
        "--n-jobs", type=n_jobs, default=1, help="forward passes at once on a CPU; -1 for every core (default: 1)"
    )


def add_training_options(parser: argparse.ArgumentParser, max_time_s: float = 600.0) -> None:
    """--max-time-s, --max-epochs, --seed and --device."""
    parser.add_argument(
        "--max-time-s",
        type=positive_float,
        default=max_time_s,
        help=f"time budget in seconds (default: {max_time_s:g})",
    )
    parser.add_argument("--max-epochs", type=positive_int, default=60, help="length of the schedule (default: 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available, else the CPU)")


def progress() -> bool:
    return sys.stderr.isatty()


def format_r2(score: dict, names: list[str]) -> str:
    parts = [f"{n} {r:.3f}" for n, r in zip(names, score["r2"])]
    return f"R² mean {score['mean']:.3f} ({', '.join(parts)})"


def training_end(model, session: Path) -> float | None:
    """Where the model's training data ends in this file (None when it was not trained on it)."""
    record = model.fitted_decoder().meta.get("training", {})
    interval = record.get("train_interval")
    if interval and record.get("source_file") == session.name:
        return float(interval[1])
    return None


def record_training_data(model, session: Path, behavior) -> None:
    """Remember which file and time span trained the model, so evaluate and decode score held-out time only."""
    record = model.fitted_decoder().meta.setdefault("training", {})
    record["train_interval"] = [behavior.start_time, behavior.end_time]
    record["source_file"] = session.name


def training_fields(args) -> dict:
    """The training settings every training command takes."""
    return dict(seed=args.seed, max_epochs=args.max_epochs, max_time_s=args.max_time_s, device=args.device)


def labelled_session(args):
    """Refuse an --output that is not a model folder (before any training time is spent), then read
    the sorting and the first --train-fraction of the behaviour."""
    from ..io.models import CONFIG_FILE
    from ..io.nwb_read import load_nwb_session

    if args.output.exists() and not (args.output / CONFIG_FILE).is_file():
        raise FileExistsError(f"{args.output} exists and is not a saved model; choose another --output.")
    sorting, behavior = load_nwb_session(args.session, behavior=args.behavior)
    if args.train_fraction < 1:
        behavior = behavior.split(args.train_fraction)[0]
    return sorting, behavior, args.session_id or args.session.stem
