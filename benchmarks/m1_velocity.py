"""Issue 2's accuracy claim: POYO `small`, trained on 2 CPU cores within 10 minutes, on
real macaque M1 hand velocity (first 70 % of time to train, last 30 % to test),
against the causal ridge (Wiener) filter on the same split.

    .venv/bin/python benchmarks/m1_velocity.py [--seeds 0 1 2] [--max-time-s 540]

Prints a table and writes benchmarks/results/m1_velocity.json.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import spikeinterface.extractors as se
import torch

import spikeinterface_poyo as sip
from spikeinterface_poyo.models.baselines import WienerFilter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "m1_center_out.nwb"
RESULTS = Path(__file__).parent / "results" / "m1_velocity.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max-time-s", type=float, default=540.0, help="training budget per seed")
    args = parser.parse_args()

    sorting = se.read_nwb_sorting(str(args.data))
    behavior = sip.read_nwb_behavior(args.data, "hand_velocity")
    train, test = behavior.split(0.7)

    t0 = time.perf_counter()
    ridge = WienerFilter().fit(sorting, train)
    ridge_r2 = sip.r2_score(test, ridge.predict(sorting, test.timestamps))
    ridge_time = time.perf_counter() - t0

    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model = sip.train_decoder(sorting, train, preset=args.preset, seed=seed, max_time_s=args.max_time_s)
        train_time = time.perf_counter() - t0
        decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False)
        score = sip.r2_score(test, decoded)
        runs.append(
            {
                "seed": seed,
                "r2": score["r2"],
                "r2_mean": score["mean"],
                "train_time_s": train_time,
                "epochs": model.meta["training"]["epochs"],
                "steps": model.meta["training"]["steps"],
            }
        )
        print(f"seed {seed}: R² {score['mean']:.3f} in {train_time:.0f} s", flush=True)

    means = np.array([r["r2_mean"] for r in runs])
    result = {
        "data": args.data.name,
        "target": "hand_velocity",
        "split": "first 70 % train (last 10 % of it for early stopping), last 30 % test",
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        },
        "poyo": {
            "preset": args.preset,
            "max_time_s": args.max_time_s,
            "runs": runs,
            "r2_mean": float(means.mean()),
            "r2_std": float(means.std()),
        },
        "ridge": {
            "bin_s": 0.05,
            "lags": 5,
            "alpha": ridge.alpha_,
            "r2": ridge_r2["r2"],
            "r2_mean": ridge_r2["mean"],
            "fit_time_s": ridge_time,
        },
        "reference_ridge_r2": 0.76,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print()
    print("| decoder | R² mean | R² x | R² y | train time |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(
            f"| POYO {args.preset} (seed {r['seed']}) | {r['r2_mean']:.3f} | {r['r2'][0]:.3f} | {r['r2'][1]:.3f} "
            f"| {r['train_time_s']:.0f} s |"
        )
    print(
        f"| Wiener filter (ridge, 50 ms × 5) | {ridge_r2['mean']:.3f} | {ridge_r2['r2'][0]:.3f} "
        f"| {ridge_r2['r2'][1]:.3f} | {ridge_time:.0f} s |"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
