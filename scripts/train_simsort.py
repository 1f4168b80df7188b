"""Reproduce SimSort's shipped detector and embedder (issue 20).

Simulates widely varied tetrode recordings with SpikeInterface's generators
(:func:`~spikeinterface_poyo.sorting.simsort.simulation.sample_settings`: seed 0 for training,
seed 1 for validation), trains the detector and the embedder on the training ones, chooses
the probability threshold and MeanShift's bandwidth on the validation ones, and writes the pair
where ``run_sorter("simsort", ...)`` finds it, with ``recipe.json`` beside it (settings, seeds,
budgets, the validation table, commit). No real recording is used, so the weights carry no
data licence. The benchmark (benchmarks/sorting.py) simulates with seeds this recipe never draws.

    .venv/bin/python scripts/train_simsort.py [--num-train 24] [--max-time-s 240]
    .venv/bin/python scripts/train_simsort.py --num-train 2 --num-val 1 --max-time-s 5 --output /tmp/smoke
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import time
from pathlib import Path

import torch

from spikeinterface_poyo.io.atomic import write_json
from spikeinterface_poyo.sorting.simsort import sample_settings, save_simsort, train_simsort_models
from spikeinterface_poyo.sorting.simsort.weights import SHIPPED

TRAIN_SEED, VALIDATION_SEED = 0, 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=24, help="simulated training recordings")
    parser.add_argument("--num-val", type=int, default=6, help="simulated validation recordings")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per simulated recording")
    parser.add_argument("--max-time-s", type=float, default=240.0, help="training budget of each model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=SHIPPED)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_settings = sample_settings(args.num_train, TRAIN_SEED, args.duration)
    val_settings = sample_settings(args.num_val, VALIDATION_SEED, args.duration)
    detector, embedder, chosen, table = train_simsort_models(train_settings, val_settings, args.max_time_s)
    rates = {s.sampling_frequency for s in train_settings}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    recipe = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "command": "python scripts/train_simsort.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("output", "threads")),
        "train_settings": [s.to_dict() for s in train_settings],
        "validation_settings": [s.to_dict() for s in val_settings],
        "detector_training": detector.meta["training"],
        "embedder_training": embedder.meta["training"],
        "chosen_on_validation": chosen,
        "validation_table": table,
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    meta = {"description": "SimSort detector and embedder trained on SpikeInterface-generated tetrodes",
            "licence": "trained on simulations only"}  # fmt: skip
    save_simsort(args.output, detector, embedder, rates, chosen, meta=meta)
    write_json(args.output / "recipe.json", recipe, indent=2)
    best = max(table, key=lambda r: r["mean_accuracy"])
    print(f"wrote {args.output}: chosen {chosen} (validation accuracy {best['mean_accuracy']:.3f}) "
          f"in {recipe['seconds']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
