"""The main job on an embedded default: simulate a session, store it as NWB, train a
POYO decoder on the first 70 % of it, decode the rest, write the predictions back
into the NWB file, save a plot and print R²."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .behavior import Behavior
from .checkpoint import save_model
from .decoding import decode_behavior
from .metrics import r2_score
from .simulation import simulate_session
from .training import train_decoder


def write_session_nwb(path: Path, sorting, behavior: Behavior, description: str) -> Path:
    """Write a sorting's units and one behavioural series into a new NWB file."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    nwbfile = NWBFile(
        session_description=description,
        identifier=f"sip-demo-{path.stem}",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    for unit_id in sorting.unit_ids:
        nwbfile.add_unit(spike_times=sorting.get_unit_spike_train(unit_id, return_times=True))
    module = nwbfile.create_processing_module("behavior", "Simulated behaviour")
    module.add(
        TimeSeries(
            name=behavior.name,
            data=behavior.values,
            timestamps=behavior.timestamps,
            unit=behavior.unit,
            description="Ground-truth 2-D velocity the simulated units are tuned to.",
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def plot_decoding(true: Behavior, decoded: Behavior, path: Path, seconds: float = 30.0) -> Path:
    """Save true against decoded behaviour, one panel per dimension, over the first seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = true.timestamps < true.timestamps[0] + seconds
    scores = r2_score(true, decoded)["r2"]
    fig, axes = plt.subplots(true.num_dimensions, 1, figsize=(10, 2.2 * true.num_dimensions), sharex=True)
    for d, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(true.timestamps[show], true.values[show, d], color="0.2", lw=1.2, label="true")
        ax.plot(decoded.timestamps[show], decoded.values[show, d], color="tab:orange", lw=1.2, label="POYO")
        ax.set_ylabel(f"{true.dimension_names[d]} ({true.unit})")
        ax.set_title(f"{true.name} {true.dimension_names[d]}: R² = {scores[d]:.3f}", fontsize=9, loc="left")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(
    output_dir: str | Path = "outputs/demo",
    duration: float = 600.0,
    num_units: int = 80,
    preset: str = "small",
    max_time_s: float = 180.0,
    seed: int = 0,
    progress_bar: bool = True,
) -> dict:
    """Run the end-to-end demo and return its summary (also written as ``summary.json``)."""
    from .nwb import load_nwb_session, write_predictions_to_nwb

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    nwb_path = output_dir / "simulated_session.nwb"
    sorting, behavior = simulate_session(duration=duration, num_units=num_units, seed=seed)
    write_session_nwb(nwb_path, sorting, behavior, "Simulated cosine-tuned units and 2-D velocity")

    sorting, behavior = load_nwb_session(nwb_path, behavior="velocity")
    train, test = behavior.split(0.7)
    model = train_decoder(sorting, train, preset=preset, seed=seed, max_time_s=max_time_s, progress_bar=progress_bar)
    model_dir = save_model(model, output_dir / "model")
    decoded = decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=progress_bar)
    score = r2_score(test, decoded)
    write_predictions_to_nwb(
        nwb_path, decoded, model=model, model_path=model_dir, metrics={"r2": score["mean"]}, overwrite=True
    )
    plot = plot_decoding(test, decoded, output_dir / "decoded_velocity.png")
    summary = {
        "nwb_file": str(nwb_path),
        "model": str(model_dir),
        "plot": str(plot),
        "r2": score["r2"],
        "r2_mean": score["mean"],
        "train_seconds": model.meta["training"]["train_time_s"],
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
