"""Spike sorting accuracy on held-out simulated tetrodes (issue 20): SimSort against
SpikeInterface's own CPU sorters.

Each recording is a :func:`~spikeinterface_poyo.sorting.simsort.simulation.simulate_tetrode`
of 8 units over 60 s, at several noise levels, with seeds that SimSort's training recipe never
drew (checked against the shipped ``recipe.json``). Every sorter runs with its default
parameters through ``run_sorter``; ``simsort_threshold`` is SimSort with its learned detector
replaced by threshold crossings (an ablation). Each sorting is compared with the ground truth
by ``compare_sorter_to_ground_truth``: mean accuracy, recall and precision over the true units,
well-detected units (accuracy >= 0.8), and false-positive, redundant and overmerged units.
Writes benchmarks/results/sorting.json and sorting.md.

    .venv/bin/pip install hdbscan          # simple, spykingcircus2 and tridesclous2 need it
    .venv/bin/python benchmarks/sorting.py [--noise-levels 5 10 15] [--seeds 0 1 2] [--threads 1]
    .venv/bin/python benchmarks/sorting.py --tables      # the markdown again, from the JSON
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine

from spikeinterface_poyo.sorting.simsort.simulation import TetrodeSettings, simulate_tetrode
from spikeinterface_poyo.sorting.simsort.weights import SHIPPED

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SORTERS = ["simsort", "simsort_threshold", "simple", "spykingcircus2", "tridesclous2", "lupin"]
#: Recording seeds: far from the training recipe's, and checked against it.
SEED_BASE = 900_000
METRICS = ["accuracy", "recall", "precision"]


def recording_settings(noise: float, seed: int, duration: float, num_units: int) -> TetrodeSettings:
    return TetrodeSettings(duration=duration, num_units=num_units, noise_level=noise, seed=SEED_BASE + seed)


def check_held_out(settings: list[TetrodeSettings]) -> None:
    """Refuse a benchmark recording whose seed the shipped weights were trained or validated on."""
    recipe = json.loads((SHIPPED / "recipe.json").read_text())
    used = {s["seed"] for key in ("train_settings", "validation_settings") for s in recipe[key]}
    clash = sorted(s.seed for s in settings if s.seed in used)
    if clash:
        raise SystemExit(f"Benchmark seeds {clash} were used to train SimSort; choose others.")


def run_one(sorter: str, recording, truth, folder: Path) -> dict:
    """Sort ``recording`` and score it against ``truth``."""
    import spikeinterface.sorters as ss
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    name, params = ("simsort", {"detection": "threshold"}) if sorter == "simsort_threshold" else (sorter, {})
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sorting = ss.run_sorter(name, recording, folder=folder, remove_existing_folder=True, verbose=False,
                                    **params)  # fmt: skip
    except Exception as err:  # a sorter failing is a result, reported as such
        return {"sorter": sorter, "error": f"{type(err).__name__}: {str(err)[-300:]}"}
    seconds = time.perf_counter() - t0
    comparison = compare_sorter_to_ground_truth(truth, sorting, exhaustive_gt=True)
    performance = comparison.get_performance()
    return {
        "sorter": sorter,
        "seconds": seconds,
        "num_units_found": len(sorting.unit_ids),
        **{m: float(performance[m].mean()) for m in METRICS},
        "well_detected": int(comparison.count_well_detected_units(0.8)),
        "false_positive": int(comparison.count_false_positive_units()),
        "redundant": int(comparison.count_redundant_units()),
        "overmerged": int(comparison.count_overmerged_units()),
    }


def summarise(rows: list[dict], sorters: list[str], noise_levels: list[float]) -> list[dict]:
    """Mean ± sample std over seeds per sorter and noise level."""
    out = []
    for noise in noise_levels:
        for sorter in sorters:
            done = [r for r in rows if r["noise"] == noise and r["sorter"] == sorter and "error" not in r]
            failed = sum(1 for r in rows if r["noise"] == noise and r["sorter"] == sorter and "error" in r)
            entry = {"noise": noise, "sorter": sorter, "runs": len(done), "failed": failed}
            for key in METRICS + ["well_detected", "false_positive", "redundant", "overmerged", "seconds"]:
                values = np.array([r[key] for r in done], dtype=float)
                entry[key] = [float(values.mean()), float(values.std(ddof=1))] if len(values) > 1 else (
                    [float(values[0]), None] if len(values) else None)  # fmt: skip
            out.append(entry)
    return out


def fmt(pair, spec=".3f") -> str:
    if pair is None:
        return "-"
    mean, std = pair
    return format(mean, spec) + ("" if std is None else f" ± {format(std, spec)}")


def welch_p(result: dict, noise: float, sorter: str, against: str = "simsort", key: str = "accuracy"):
    """Two-sided Welch p-value of ``sorter`` against ``against`` on ``key`` over seeds (None
    with fewer than two runs of either)."""
    from scipy.stats import ttest_ind

    def values(name):
        return [r[key] for r in result["runs"] if r["noise"] == noise and r["sorter"] == name and "error" not in r]

    a, b = values(sorter), values(against)
    if sorter == against or len(a) < 2 or len(b) < 2:
        return None
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Held-out simulated tetrodes ({s['num_units']} units, {s['duration']:g} s, seeds {s['seeds']} + "
        f"{SEED_BASE}), every sorter at its defaults; mean ± sample std over seeds. Well-detected: accuracy >= "
        f"0.8. Commit {result['commit']}; {result['machine']['processor']}, {s['threads']} torch thread(s). "
        "p: Welch's test of the sorter's accuracy against SimSort's over seeds.",
        "",
        "| noise | sorter | runs | accuracy | p vs simsort | recall | precision | well-detected | false positive "
        "| redundant | overmerged | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        runs = f"{e['runs']} ({e['failed']} failed)" if e["failed"] else str(e["runs"])
        p = welch_p(result, e["noise"], e["sorter"])
        shown_p = "-" if p is None else f"{p:.2g}"
        lines.append(
            f"| {e['noise']:g} | {e['sorter']} | {runs} | {fmt(e['accuracy'])} | {shown_p} "
            f"| {fmt(e['recall'])} | {fmt(e['precision'])} | {fmt(e['well_detected'], '.1f')} "
            f"| {fmt(e['false_positive'], '.1f')} | {fmt(e['redundant'], '.1f')} | {fmt(e['overmerged'], '.1f')} "
            f"| {fmt(e['seconds'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sorters", nargs="+", default=SORTERS)
    parser.add_argument("--noise-levels", type=float, nargs="+", default=[5.0, 10.0, 15.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--num-units", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="sorting")
    parser.add_argument("--tables", action="store_true", help="only re-write the markdown from the saved JSON")
    args = parser.parse_args()
    if args.tables:
        result = json.loads((args.out / f"{args.stem}.json").read_text())
        (args.out / f"{args.stem}.md").write_text(markdown(result))
        print(markdown(result))
        return
    torch.set_num_threads(args.threads)
    import spikeinterface_poyo  # noqa: F401  (registers simsort)

    settings = [recording_settings(n, s, args.duration, args.num_units) for n in args.noise_levels for s in args.seeds]
    check_held_out(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for st in settings:
            recording, truth = simulate_tetrode(st)
            recording = recording.save(folder=Path(tmp) / f"rec_{st.seed}_{st.noise_level:g}", n_jobs=1)
            for sorter in args.sorters:
                scores = run_one(sorter, recording, truth, Path(tmp) / sorter)
                row = {"noise": st.noise_level, "seed": st.seed, **scores}
                rows.append(row)
                shown = row.get("error") or f"accuracy {row['accuracy']:.3f}, well {row['well_detected']}"
                print(f"noise {st.noise_level:g} seed {st.seed} {sorter}: {shown}", flush=True)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "settings": {
            "sorters": args.sorters,
            "noise_levels": args.noise_levels,
            "seeds": args.seeds,
            "seed_base": SEED_BASE,
            "duration": args.duration,
            "num_units": args.num_units,
            "threads": args.threads,
            "simsort_weights": json.loads((SHIPPED / "config.json").read_text())["weights_sha256"],
        },  # fmt: skip
        "runs": rows,
        "summary": summarise(rows, args.sorters, args.noise_levels),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{args.stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
