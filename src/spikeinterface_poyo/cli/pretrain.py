"""``spikeinterface-poyo pretrain``: pretrain one POYO model on many sessions from a config file."""

from __future__ import annotations

from pathlib import Path

from .common import progress

HELP = "pretrain on many sessions from a config file"
DESCRIPTION = """Pretrain one model on many sessions described by a configuration file.

The file (.toml or .json) lists the sessions (NWB files with a behavioural series, or
simulated ones), the preset, the training options and where checkpoints go; sessions are
read only when training needs them. Run it as is for one process, or under torchrun for
data-parallel training (gloo on CPUs, NCCL on GPUs); rank 0 saves the model. With
[checkpoint] resume = true a killed run continues from its newest good checkpoint (with the
same settings: a resumed run refuses changed ones).

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


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="run configuration (.toml or .json)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: this process's GPU when there is one)")


def run(args) -> None:
    import os

    from ..models.poyo import pretrain
    from ..models.registry import save_model
    from ..training.run_config import read_config, resolve, session_sources

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
        progress_bar=progress(),
        device=args.device,
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
