"""Accuracy benchmark: POYO against the baselines on real and simulated sessions.

Every method is trained on the first 70 % of a session's (running) time and scored by
R² (averaged over the behaviour's dimensions) on the last 30 %, with the same
targets for all. POYO and the neural baselines hold out the last 10 % of their
training time for early stopping; the Wiener filter uses it to pick its ridge penalty.

    .venv/bin/python benchmarks/decoding.py [--seeds 0 1 2] [--max-time-s 300] [--datasets m1_velocity ...]

Writes benchmarks/results/decoding.json (results and the settings each method was run
with; datasets and methods not run this time are kept from earlier runs unless --fresh)
and benchmarks/results/decoding.md, and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine

import spikeinterface_poyo as sip
from spikeinterface_poyo.io.nwb_read import read_nwb_epochs
from spikeinterface_poyo.models.baselines import GRUDecoder, MLPDecoder, WienerFilter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
TRAIN_FRACTION = 0.7

#: name -> (file, behaviour series, restrict to the epochs tagged 'run')
REAL_DATASETS = {
    "m1_velocity": ("m1_center_out.nwb", "hand_velocity", False),
    "linear_track_position": ("linear_track.nwb", "position", True),
    "linear_track_velocity": ("linear_track.nwb", "velocity", True),
    "w_maze_position": ("w_maze.nwb", "position", True),
    "w_maze_velocity": ("w_maze.nwb", "velocity", True),
    # the two Miller-lab monkeys (movement only, trials end to end): transfer's held-out sessions
    "chewie_velocity": ("chewie_20131003_center_out.nwb", "hand_velocity", False),
    "mihi_velocity": ("mihi_20140303_center_out.nwb", "hand_velocity", False),
}
SIMULATED = {"simulated_velocity": dict(duration=600.0, num_units=60, seed=0)}
DATASETS = [d for d in REAL_DATASETS if not d.startswith(("chewie", "mihi"))] + [*SIMULATED]
METHODS = ["poyo", "wiener", "mlp", "gru"]
LABELS = {"poyo": "POYO {preset}", "wiener": "Wiener", "mlp": "MLP", "gru": "GRU"}


def load_dataset(name: str, data_dir: Path):
    """(sorting, behaviour, description) of one benchmark dataset."""
    if name in SIMULATED:
        sorting, behavior = sip.simulate_session(**SIMULATED[name])
        return sorting, behavior, {"simulated": SIMULATED[name]}
    import spikeinterface.extractors as se

    file, series, run_only = REAL_DATASETS[name]
    path = data_dir / file
    with warnings.catch_warnings():  # pynwb/hdmf namespace chatter
        warnings.simplefilter("ignore")
        sorting = se.read_nwb_sorting(str(path))
        behavior = sip.read_nwb_behavior(path, series)
        if run_only:
            behavior = behavior.restrict(read_nwb_epochs(path, "run"))
    return sorting, behavior, {"file": file, "series": series, "running_epochs_only": run_only}


def split_covered_time(behavior: sip.Behavior, fraction: float) -> tuple[sip.Behavior, sip.Behavior]:
    """Split at ``fraction`` of the valid samples in time order.

    Unlike ``Behavior.split``, which cuts the time span, this cuts the time actually
    covered, so rest epochs removed from between running epochs do not count. The
    behaviour is sampled at a constant rate, so samples measure time.
    """
    t = behavior.timestamps[behavior.valid]
    cut = t[int(round(fraction * len(t)))]
    return behavior.time_slice(None, cut), behavior.time_slice(cut, None)


def covered_seconds(behavior: sip.Behavior) -> float:
    """Time covered by the valid samples (count times the sampling period)."""
    return float(behavior.valid.sum() * np.median(np.diff(behavior.timestamps)))


def make_baseline(method: str, seed: int):
    """A fit/predict decoder object for a baseline (POYO is handled apart)."""
    if method == "wiener":
        return WienerFilter()
    if method == "mlp":
        return MLPDecoder(seed=seed)
    if method == "gru":
        return GRUDecoder(seed=seed)
    raise ValueError(method)


def run_poyo(sorting, train, test, seed: int, args) -> dict:
    t0 = time.perf_counter()
    model = sip.train_decoder(
        sorting, train, preset=args.preset, seed=seed, max_time_s=args.max_time_s, progress_bar=False
    )
    fit_time = time.perf_counter() - t0
    decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False)
    training = model.meta["training"]
    extra = {k: training[k] for k in ("epochs", "best_epoch", "steps", "stopped_by", "hyperparameters")}
    return {"decoded": decoded, "fit_time_s": fit_time, **extra}


def run_baseline(method: str, sorting, train, test, seed: int | None) -> dict:
    t0 = time.perf_counter()
    decoder = make_baseline(method, seed).fit(sorting, train)
    fit_time = time.perf_counter() - t0
    extra = {"alpha": decoder.alpha_} if method == "wiener" else {"epochs": len(decoder.history_["val_r2"])}
    if method != "wiener":
        extra["best_epoch"] = decoder.best_epoch_
    return {"decoded": decoder.predict(sorting, test.timestamps), "fit_time_s": fit_time, **extra}


def run_method(method: str, sorting, train, test, seeds: list[int], args) -> dict:
    """Train and score one method over the seeds; the Wiener filter has no seed and runs once."""
    runs = []
    seeds = [None] if method == "wiener" else seeds
    for seed in seeds:
        if method == "poyo":
            out = run_poyo(sorting, train, test, seed, args)
        else:
            out = run_baseline(method, sorting, train, test, seed)
        score = sip.r2_score(test, out.pop("decoded"))
        runs.append({"seed": seed, "r2": score["r2"], "r2_mean": score["mean"], **out})
        print(f"  {method:6s} seed {seed}: R² {score['mean']:.3f} ({out['fit_time_s']:.0f} s)", flush=True)
    means = np.array([r["r2_mean"] for r in runs])
    settings = {
        "seeds": seeds,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
    }
    if method == "poyo":
        settings.update(preset=args.preset, max_time_s=args.max_time_s)
    return {
        "settings": settings,
        "runs": runs,
        "r2_mean": float(means.mean()),
        "r2_std": float(means.std()),
        "fit_time_s_mean": float(np.mean([r["fit_time_s"] for r in runs])),
    }


def run_dataset(name: str, args) -> dict:
    sorting, behavior, source = load_dataset(name, args.data_dir)
    train, test = split_covered_time(behavior, TRAIN_FRACTION)
    print(f"{name}: {sorting.get_num_units()} units, train {len(train)} / test {len(test)} samples", flush=True)
    entry = {
        **source,
        "target": behavior.name,
        "unit": behavior.unit,
        "num_units": int(sorting.get_num_units()),
        "train_samples": len(train),
        "test_samples": len(test),
        "train_seconds": covered_seconds(train),
        "test_seconds": covered_seconds(test),
        "train_span_s": [train.start_time, train.end_time],
        "test_span_s": [test.start_time, test.end_time],
        "methods": {},
    }
    for method in args.methods:
        entry["methods"][method] = run_method(method, sorting, train, test, args.seeds, args)
    return entry


def format_cell(result: dict | None) -> str:
    """``R² mean ± std (n seeds, mean fit time)``, or ``-`` when the method was not run."""
    if result is None:
        return "-"
    n = len(result["runs"])
    spread = f" ± {result['r2_std']:.3f}" if n > 1 else ""
    runs = "1 run" if result["settings"]["seeds"] == [None] else f"{n} seed{'s' * (n > 1)}"
    threads = result["settings"].get("torch_threads")
    on = f", {threads} thread{'s' * (threads > 1)}" if threads else ""
    return f"{result['r2_mean']:.3f}{spread} ({runs}, {result['fit_time_s_mean']:.0f} s{on})"


def markdown_table(datasets: dict) -> str:
    """One row per dataset: R² mean ± std over seeds (number of seeds, mean fit time) per method."""
    poyo = [d["methods"]["poyo"]["settings"] for d in datasets.values() if "poyo" in d["methods"]]
    poyo_label = LABELS["poyo"].format(preset="/".join(sorted({p["preset"] for p in poyo})))
    header = ["dataset", "target", "units", "train / test s", "POYO budget"]
    header += [poyo_label if m == "poyo" else LABELS[m] for m in METHODS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, d in datasets.items():
        covered = f"{d['train_seconds']:.0f} / {d['test_seconds']:.0f}"
        budget = f"{d['methods']['poyo']['settings']['max_time_s']:g} s" if "poyo" in d["methods"] else "-"
        row = [name, d["target"], str(d["num_units"]), covered, budget]
        row += [format_cell(d["methods"].get(m)) for m in METHODS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_results(datasets: dict, fresh: bool) -> dict:
    """Merge this run's datasets into ``decoding.json`` and rewrite the table. A lock file
    serialises the read-merge-write, so runs on different datasets can go side by side."""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / ".decoding.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _merge_and_write(datasets, fresh)


def _merge_and_write(datasets: dict, fresh: bool) -> dict:
    path = RESULTS / "decoding.json"
    previous = json.loads(path.read_text())["datasets"] if path.exists() and not fresh else {}
    merged = {}
    for name in DATASETS:  # methods run now replace earlier results of the same method; others are kept
        if name in datasets:
            earlier = previous.get(name, {}).get("methods", {})
            merged[name] = {**datasets[name], "methods": {**earlier, **datasets[name]["methods"]}}
            merged[name]["methods"] = {m: merged[name]["methods"][m] for m in METHODS if m in merged[name]["methods"]}
        elif name in previous:
            merged[name] = previous[name]
    result = {
        "protocol": (
            "train on the first 70 % of the (running) time, score R² (mean over dimensions) on the last 30 %; "
            "POYO and the MLP/GRU early-stop on the last 10 % of the training time, the Wiener filter picks "
            "its ridge penalty there. Hippocampus targets are restricted to epochs tagged 'run'."
        ),
        "machine": machine(),
        "baselines": {
            "wiener": vars(WienerFilter()),
            "mlp": {k: v for k, v in vars(MLPDecoder()).items() if k not in ("seed", "device")},
            "gru": {k: v for k, v in vars(GRUDecoder()).items() if k not in ("seed", "device")},
        },
        "datasets": merged,
    }
    (RESULTS / "decoding.json").write_text(json.dumps(result, indent=2))
    table = markdown_table(merged)
    note = (
        "R² on the last 30 % (mean ± std over seeds; number of seeds, mean fit time and torch threads in brackets; "
        "the Wiener filter has no seed). "
        f"Machine: {result['machine']['processor']}, {result['machine']['device']}.\n"
    )
    (RESULTS / "decoding.md").write_text(note + "\n" + table + "\n")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-time-s", type=float, default=300.0, help="POYO training budget per run")
    parser.add_argument("--preset", default="small", help="POYO preset")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--fresh", action="store_true", help="drop results of datasets not run this time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    done = {}
    for name in args.datasets:
        done[name] = run_dataset(name, args)
        write_results(done, args.fresh)  # after each dataset, so an interrupted run keeps what it did
    print()
    print((RESULTS / "decoding.md").read_text())
    print(f"wrote {RESULTS / 'decoding.json'} and {RESULTS / 'decoding.md'}")


if __name__ == "__main__":
    main()
