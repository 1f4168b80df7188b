"""Command line: train, evaluate, decode, finetune and pretrain models on NWB files, infer MtM rates, and the demo.

    spikeinterface-poyo train SESSION.nwb --behavior hand_velocity --output decoder/
    spikeinterface-poyo evaluate SESSION.nwb --model decoder/ --behavior hand_velocity
    spikeinterface-poyo decode SESSION.nwb --model decoder/ --behavior hand_velocity
    spikeinterface-poyo finetune DAY2.nwb --model decoder/ --behavior hand_velocity --output day2/
    spikeinterface-poyo pretrain --config corpus.toml
    spikeinterface-poyo rates SESSION.nwb --model mtm_model/
    torchrun --nproc_per_node 4 -m spikeinterface_poyo pretrain --config corpus.toml

Also ``python -m spikeinterface_poyo``. One module per command; each imports what it needs only
when it runs, so ``--help`` answers at once. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

PROG = "spikeinterface-poyo"
EXIT_ERROR = 2
COMMANDS = ("train", "evaluate", "decode", "finetune", "pretrain", "rates", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per module of this package."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decode behaviour from spike-sorted NWB files with POYO and its baselines.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        sub = commands.add_parser(
            name, help=module.HELP, description=module.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0, or 2 after an error)."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return EXIT_ERROR
    return 0
