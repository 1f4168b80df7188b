"""The main job on an embedded default: simulate a session, store it as NWB, train a
POYO decoder on the first 70 % of it, decode the rest, write the predictions back
into the NWB file, save a plot and print R²."""

from __future__ import annotations

import json
from pathlib import Path

from .common import positive_float

HELP = "end-to-end demo on a simulated session (no data needed)"
DESCRIPTION = (
    "Simulate a session of cosine-tuned units, write it to NWB, train POYO on the first 70 %%, "
    "decode the rest, write the predictions into the NWB file, save a plot and print R²."
)


def add_arguments(parser) -> None:
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"), help="folder for the results")
    parser.add_argument("--preset", default="small", help="architecture preset (default: small)")
    parser.add_argument("--max-time-s", type=positive_float, default=180.0, help="training time budget (default: 180)")
    parser.add_argument("--duration", type=positive_float, default=600.0, help="simulated seconds (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args) -> None:
    summary = run_demo(
        args.output, duration=args.duration, preset=args.preset, max_time_s=args.max_time_s, seed=args.seed
    )
    print(f"NWB file with the predictions: {summary['nwb_file']}")
    print(f"model: {summary['model']}")
    print(f"plot: {summary['plot']}")
    r2 = ", ".join(f"{v:.3f}" for v in summary["r2"])
    print(f"R² on the held-out 30 %: {summary['r2_mean']:.3f} (x, y: {r2})")


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.metrics import r2_score
    from ..io.nwb_read import load_nwb_session
    from ..io.nwb_write import write_predictions_to_nwb, write_session_nwb
    from ..models.decoding import decode_behavior
    from ..models.poyo import train_decoder
    from ..models.registry import save_model
    from ..simulation import simulate_session
    from ..spikeinterface.widgets import plot_decoded_behavior

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
    widget = plot_decoded_behavior(decoded, true=test, label="POYO", backend="matplotlib")
    plot = output_dir / "decoded_velocity.png"
    widget.figure.savefig(plot, dpi=120)
    plt.close(widget.figure)
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
