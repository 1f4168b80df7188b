"""``spikeinterface-poyo pretrain``: pretrain one POYO or MtM model on many sessions from a config file."""

from __future__ import annotations

import os
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

objective = "masked" (spikes only) or "both" (behaviour and masked losses) trains POYO's
encoding head by masked modelling too; then a session may omit behavior, and [model] takes
schemes and mask_ratio.

With family = "mtm" the model is MtM, masked modelling of spikes without behaviour: sessions
need only their units (path, and optionally session_id, time_range, trials = true for
windows around the trials table's start_time, event_column, event_offset), or
simulated_regions = {...}; [model] takes schemes ("mtm", "temporal"...), bin_size, num_bins,
position and sizes.

example mtm.toml:
  family = "mtm"
  output = "mtm_model/"
  [model]
  schemes = "mtm"
  [[sessions]]
  path = "session_a.nwb"
  [[sessions]]
  path = "session_b.nwb"
  trials = true

examples:
  spikeinterface-poyo pretrain --config corpus.toml
  torchrun --nproc_per_node 4 -m spikeinterface_poyo pretrain --config corpus.toml"""


#: Sessions of an MtM run (``family = "mtm"``): spikes only, contiguous or around trials.
MTM_NWB_KEYS = {"path", "session_id", "time_range", "trials", "event_column", "event_offset"}
MTM_SIMULATED_KEYS = {"simulated_regions", "session_id"}


def mtm_sessions(config: dict, bin_size: float, num_bins: int) -> list:
    """The binned sessions of an MtM run: NWB files (their units; windows around the rows of
    their trials table with ``trials = true``) or ``simulated_regions = {...}``."""
    from ..io.nwb_read import read_nwb_trials, read_nwb_units
    from ..models.mtm.data import bin_session
    from ..simulation import simulate_regions
    from ..training.run_config import check_keys, resolve

    sessions = []
    for i, entry in enumerate(config["sessions"]):
        where = f"sessions[{i}]"
        if "simulated_regions" in entry:
            check_keys(entry, MTM_SIMULATED_KEYS, where)
            sorting = simulate_regions(**entry["simulated_regions"])[0]
            session_id, events, extra = entry.get("session_id") or f"simulated_{i}", None, {}
        elif "path" in entry:
            check_keys(entry, MTM_NWB_KEYS, where)
            path = resolve(config, entry["path"])
            sorting = read_nwb_units(path)
            session_id = entry.get("session_id") or path.stem
            events = read_nwb_trials(path) if entry.get("trials", False) else None
            extra = {k: entry[k] for k in ("event_column", "event_offset") if k in entry}
            if "time_range" in entry:
                extra["time_range"] = tuple(entry["time_range"])
        else:
            raise ValueError(f"{where}: give either path = ... (an NWB file) or simulated_regions = {{...}}.")
        sessions.append(bin_session(sorting, str(session_id), bin_size, num_bins, events=events, **extra))
    return sessions


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="run configuration (.toml or .json)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: this process's GPU when there is one)")


def loop_settings(args, config: dict) -> dict:
    """The training-loop keywords a run configuration gives (seed, checkpoints, [training])."""
    from ..training.run_config import resolve

    checkpoint = config.get("checkpoint", {})
    return dict(
        seed=config.get("seed", 0),
        checkpoint_dir=resolve(config, checkpoint["dir"]) if "dir" in checkpoint else None,
        checkpoint_every=checkpoint.get("every"),
        resume=checkpoint.get("resume", False),
        progress_bar=progress(),
        device=args.device,
        **config.get("training", {}),
    )


def save_on_main(model, config: dict, what: str, score: str) -> None:
    """Rank 0 saves the model and says how it was trained."""
    from ..models.registry import save_model
    from ..training.run_config import resolve

    if int(os.environ.get("RANK", "0")) == 0:
        path = save_model(model, resolve(config, config["output"]))
        record = model.meta["training"]
        print(
            f"{what} on {len(record['sessions'])} sessions with {record['world_size']} process(es): "
            f"{record['steps']} steps in {record['train_time_s']:.0f} s, {score}"
        )
        print(f"model saved to {path}")


def run_mtm(args, config: dict) -> None:
    """Pretrain an MtM model (``family = "mtm"``) on the sessions' spikes."""
    from ..models.mtm import pretrain_mtm

    model_settings = dict(config.get("model", {}))
    bin_size, num_bins = model_settings.pop("bin_size", 0.02), model_settings.pop("num_bins", 100)
    sessions = mtm_sessions(config, bin_size, num_bins)
    model = pretrain_mtm(sessions, preset=config.get("preset", "cpu"), **loop_settings(args, config), **model_settings)
    nll = -model.meta["training"]["best_val_neg_masked_nll"]
    save_on_main(model, config, "MtM pretrained", f"best validation masked NLL {nll:.4f}")


def run(args) -> None:
    from ..models.poyo import pretrain
    from ..training.run_config import read_config, session_sources

    config = read_config(args.config)
    family = config.get("family", "poyo")
    if family == "mtm":
        return run_mtm(args, config)
    if family != "poyo":
        raise ValueError(f"{args.config.name}: family must be 'poyo' or 'mtm', got {family!r}.")
    objective = config.get("objective", "behavior")
    model = pretrain(
        session_sources(config, need_behavior=objective == "behavior"),
        config.get("preset", "small"),
        objective=objective,
        max_sessions_in_memory=config.get("max_sessions_in_memory"),
        **loop_settings(args, config),
        **config.get("model", {}),
    )
    record = model.meta["training"]
    score = (f"best validation R² {record['best_val_r2']:.3f}" if "best_val_r2" in record
             else f"best validation masked NLL {-record['best_val_neg_masked_nll']:.3f}")  # fmt: skip
    save_on_main(model, config, "pretrained", score)
