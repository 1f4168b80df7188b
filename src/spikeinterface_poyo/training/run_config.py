"""A pretraining run described by a JSON or TOML file (``spikeinterface-poyo pretrain --config``).

Example (TOML)::

    output = "models/my_pretrained"     # saved model folder
    preset = "small"
    seed = 0
    max_sessions_in_memory = 8          # per process; omit to keep all sessions loaded

    [training]                          # keyword arguments of sip.pretrain
    max_epochs = 40
    max_time_s = 3600
    batch_size = 64

    [checkpoint]
    dir = "checkpoints/"                # periodic, atomic training checkpoints
    every = 200                         # steps; default once per epoch
    resume = true                       # continue from the newest good checkpoint

    [[sessions]]
    path = "monkey_a_day1.nwb"
    behavior = "hand_velocity"
    session_id = "monkey_a_day1"        # default: the file name
    time_range = [0, 600]               # optional, seconds
    intervals = [[0, 100], [200, 400]]  # optional epochs to keep
    epochs = "run"                      # optional: epochs table rows tagged "run"

    [[sessions]]
    simulated = {seed = 3, duration = 120, num_units = 40}   # sip.simulate_session(**simulated)

Relative paths are relative to the configuration file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.sessions import SessionSource
from ..io.nwb_read import nwb_session

TOP_KEYS = {
    "output",
    "family",
    "preset",
    "seed",
    "max_sessions_in_memory",
    "training",
    "checkpoint",
    "sessions",
    "model",
    "objective",
}
CHECKPOINT_KEYS = {"dir", "every", "resume"}
NWB_KEYS = {"path", "behavior", "session_id", "time_range", "intervals", "epochs"}
SIMULATED_KEYS = {"simulated", "session_id"}


def read_config(path: str | Path) -> dict:
    """Parse a ``.json`` or ``.toml`` run configuration and check its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No configuration file at {path}.")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ValueError(f"{path.name}: TOML configurations need Python 3.11 or newer; use JSON.") from None
        config = tomllib.loads(text)
    elif path.suffix == ".json":
        config = json.loads(text)
    else:
        raise ValueError(f"{path.name}: use a .json or .toml configuration file.")
    check_keys(config, TOP_KEYS, path.name)
    for key in ("output", "sessions"):
        if key not in config:
            raise ValueError(f"{path.name} has no {key!r}; see `spikeinterface-poyo pretrain --help`.")
    if not config["sessions"]:
        raise ValueError(f"{path.name} lists no sessions.")
    check_keys(config.get("checkpoint", {}), CHECKPOINT_KEYS, f"{path.name} [checkpoint]")
    config["_base"] = path.resolve().parent
    return config


def check_keys(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed are {sorted(allowed)}.")


def session_sources(config: dict, need_behavior: bool = True) -> list[SessionSource]:
    """The sessions of a configuration, each to be read only when training needs it; with
    ``need_behavior=False`` (a masked objective) an NWB session may name no behaviour."""
    sources = []
    for i, entry in enumerate(config["sessions"]):
        where = f"sessions[{i}]"
        if "simulated" in entry:
            check_keys(entry, SIMULATED_KEYS, where)
            sources.append(_simulated_source(entry["simulated"], entry.get("session_id") or f"simulated_{i}"))
        elif "path" in entry:
            check_keys(entry, NWB_KEYS, where)
            if "behavior" not in entry and need_behavior:
                raise ValueError(
                    f"{where}: name the behavioural series to decode with behavior = ..., or set objective = "
                    '"masked" or "both" to learn from its spikes alone.'
                )
            sources.append(
                nwb_session(
                    resolve(config, entry["path"]),
                    entry.get("behavior"),
                    session_id=entry.get("session_id"),
                    time_range=tuple(entry["time_range"]) if "time_range" in entry else None,
                    intervals=entry.get("intervals"),
                    epochs=entry.get("epochs"),
                )
            )
        else:
            raise ValueError(f"{where}: give either path = ... (an NWB file) or simulated = {{...}}.")
    return sources


def _simulated_source(kwargs: dict, session_id: str) -> SessionSource:
    def load():
        from ..simulation import simulate_session

        return simulate_session(**kwargs)

    return SessionSource(str(session_id), load)


def resolve(config: dict, path) -> Path:
    """A path from the configuration, relative to the configuration file unless absolute."""
    path = Path(path)
    return path if path.is_absolute() else config["_base"] / path
