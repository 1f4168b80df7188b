"""Fast recalibration (issue 16, part 4): R² on M1's test part against training wall time.

A brain-computer interface is recalibrated every day, so the time to a good decoder matters as much
as the best R². On the M1 session (``m1_center_out.nwb``, hand velocity, 171 units) with
``benchmarks/decoding.py``'s split (train on the first 70 % of the covered time, score R², the mean
over x and y, on the last 30 %), every method here is causal (it sees only spikes before the decoded
time):

- ``poyo``: ``sip.train_decoder(..., context="causal", max_time_s=budget)``, the default recipe
  (``small`` preset from a random initialisation, batch 16, one-cycle AdamW at 2e-3, unit dropout 0.1);
- ``poyo_fast``: the same with ``recipe="fast"``: the shipped ``poyo_small_sim_hc`` weights (trained
  on simulated and rat hippocampus sessions, never on M1), new embeddings for M1's units and session,
  a 0.5 s window, every weight trained at 1e-3 (see ``train_decoder``);
- ``wiener``, ``mlp``, ``gru``: the baselines at their defaults, as ``decoding.py`` makes them. They
  stop early by themselves; the MLP and GRU are run once without a budget, and again with
  ``max_time_s=budget`` for every budget shorter than that run took. The Wiener filter (closed form,
  no seed) runs once.

POYO's budget is ``max_time_s``: the one-cycle schedule is re-fitted to it after each epoch and
training stops at the end of the epoch that passes it (or earlier, when no whole epoch more fits),
so a run can end part of an epoch before or after its budget; every cell also gives the measured
wall time of the whole fit (reading the data, loading the shipped model, training), which is what
the table's times are.

``--parts select`` chooses the recipe on the training time only: every recipe of ``CANDIDATES``
(learning rate, schedule, batch size, optimiser, window, latents, epoch length, warm start) is
trained on the first 85 % of the training part with ``--select-budgets`` (60 s) and
``--select-seeds`` and scored on its last 15 % (``decoding.validation_split``); the baselines are
scored there too, for reference. The candidate with the best mean validation R² is reported as the
choice, and compared with the recipe the package ships as ``recipe="fast"`` (a mismatch is printed
and recorded: the curve always measures the shipped recipe). The test part is never looked at.

Mean ± sample standard deviation (ddof=1) over ``--seeds``; ``--threads`` torch threads (2).

    .venv/bin/python benchmarks/recalibration.py                       # selection, then the curve: 3 seeds, 2 threads
                                                                        # (about 25 + 65 min on 2 quiet cores)
    .venv/bin/python benchmarks/recalibration.py --parts curve --budgets 15 30 --seeds 0 --threads 1 \\
        --out /tmp/recal_smoke                                          # quick end-to-end check

Writes ``recalibration.json`` (commit, date, machine, every setting, the selection's every point
and every run of the curve) and ``recalibration.md`` into ``--out`` (benchmarks/results), and
prints the tables. A run of one part keeps the other part's results from the file already there.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine
from decoding import (
    DATA,
    RESULTS,
    TRAIN_FRACTION,
    VAL_FRACTION,
    covered_seconds,
    decode,
    fit_baseline,
    fit_poyo,
    load_dataset,
    split_covered_time,
    validation_split,
)

import spikeinterface_poyo as sip
from spikeinterface_poyo.models.baselines import GRUDecoder, MLPDecoder, WienerFilter
from spikeinterface_poyo.models.poyo.training import FAST_RECIPE

DATASET = "m1_velocity"
BUDGETS = [15.0, 30.0, 60.0, 120.0, 300.0]
PARTS = ["select", "curve"]
#: the curve's methods: POYO's two recipes (train_decoder settings) and the baselines
RECIPES = {"poyo": {}, "poyo_fast": {"recipe": "fast"}}
BASELINES = ["wiener", "mlp", "gru"]
METHODS = [*RECIPES, *BASELINES]
LABELS = {
    "poyo": "POYO small, default recipe",
    "poyo_fast": "POYO, recipe='fast' (warm start, 0.5 s window)",
    "wiener": "Wiener",
    "mlp": "MLP",
    "gru": "GRU",
}
#: recipes tried on the validation part by ``--parts select``: train_decoder settings on top of its
#: defaults (all causal, preset small); "recipe": "fast" starts from the shipped model
CANDIDATES: dict[str, dict] = {
    "default": {},
    "lr5e-3": {"lr": 5e-3},
    "lr1e-2": {"lr": 1e-2},
    "constant_lr": {"schedule": "constant"},
    "batch8": {"batch_size": 8},
    "batch32": {"batch_size": 32},
    "lamb": {"optimizer": "lamb"},
    "latents4": {"num_latents_per_step": 4},
    "epoch256": {"windows_per_epoch": 256},
    "window0.25": {"sequence_length": 0.25},
    "window0.5": {"sequence_length": 0.5},
    "window0.5_lr5e-3": {"sequence_length": 0.5, "lr": 5e-3},
    "window0.5_batch32": {"sequence_length": 0.5, "batch_size": 32},
    "warm_start_window1": {"recipe": "fast", "sequence_length": 1.0},
    "warm_start_window1_lr2e-3": {"recipe": "fast", "sequence_length": 1.0, "lr": 2e-3},
    "fast": {"recipe": "fast"},
    "fast_lr2e-3": {"recipe": "fast", "lr": 2e-3},
    "fast_epoch416": {"recipe": "fast", "windows_per_epoch": 416},
}
SHIPPED = "fast"  # the candidate that is the package's recipe="fast"


def fit(method: str, sorting, train, seed, budget_s: float | None, args) -> tuple:
    """(model, record) of one method; POYO's ``method`` is a recipe name of RECIPES or CANDIDATES,
    ``budget_s`` its ``max_time_s`` (for the MLP and GRU, None runs them without a budget)."""
    if method in BASELINES:
        params = {} if budget_s is None else {"max_time_s": budget_s}
        model, record = fit_baseline(method, sorting, train, "causal", params, seed, args)
        return model, {**record, "capped_s": budget_s}
    recipe = {**RECIPES, **CANDIDATES}[method]
    model, record = fit_poyo(sorting, train, "causal", recipe, seed, budget_s, args)
    return model, {**record, "budget_s": budget_s}


def scored(method: str, model, sorting, part, record: dict, seed) -> dict:
    """``record`` with the R² of ``model`` on ``part`` (per dimension and mean) and the seed."""
    r2 = sip.r2_score(part, decode("poyo" if method not in BASELINES else method, model, sorting, part.timestamps))
    return {"seed": seed, "r2": r2["r2"], "r2_mean": r2["mean"], **record, "fit_time_s": round(record["fit_time_s"], 1)}


def select(sorting, train, args) -> dict:
    """Validation R² of every candidate recipe (fitted on the first 85 % of the training part, scored
    on its last 15 %) and of the baselines; the test part is not an argument, so no choice sees it."""
    fit_part, val_part = validation_split(train, args.val_fraction)
    points = []
    for budget in args.select_budgets:
        for name in args.candidates:
            for seed in args.select_seeds:
                model, record = fit(name, sorting, fit_part, seed, budget, args)
                point = {"candidate": name, "recipe": CANDIDATES[name], **scored(name, model, sorting, val_part,
                                                                                 record, seed)}  # fmt: skip
                points.append(point)
                print(f"  select {name:26s} {budget:4g} s seed {seed}: validation R² {point['r2_mean']:.3f} "
                      f"({point['fit_time_s']:.0f} s, {point['steps']} steps)", flush=True)  # fmt: skip
    reference = []
    for method in BASELINES:
        for seed in [None] if method == "wiener" else args.select_seeds:
            model, record = fit(method, sorting, fit_part, seed, None, args)
            reference.append({"method": method, **scored(method, model, sorting, val_part, record, seed)})
            print(f"  select {method:26s} seed {seed}: validation R² {reference[-1]['r2_mean']:.3f}", flush=True)
    means = {}
    for point in points:
        means.setdefault(point["candidate"], []).append(point["r2_mean"])
    means = {name: float(np.mean(values)) for name, values in means.items()}
    chosen = max(means, key=means.get)
    if chosen != SHIPPED:
        print(f"  NOTE: the validation part chose {chosen!r}, not the shipped recipe {SHIPPED!r}: revisit FAST_RECIPE")
    return {
        "budgets_s": args.select_budgets,
        "seeds": args.select_seeds,
        "fit_seconds": covered_seconds(fit_part),
        "validation_seconds": covered_seconds(val_part),
        "validation_span_s": [val_part.start_time, val_part.end_time],
        "candidates": {name: CANDIDATES[name] for name in args.candidates},
        "points": points,
        "baselines": reference,
        "val_r2_mean": means,
        "chosen": chosen,
        "chosen_is_shipped": chosen == SHIPPED,
        "date": now(),
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
    }


def curve(sorting, train, test, args, write) -> dict:
    """Every method's test R² at every budget and seed, written after each method."""
    results = {}
    for method in args.methods:
        runs = []
        for seed in [None] if method == "wiener" else args.seeds:
            if method in RECIPES:
                for budget in args.budgets:
                    model, record = fit(method, sorting, train, seed, budget, args)
                    runs.append(scored(method, model, sorting, test, record, seed))
                    print(f"  {method:9s} {budget:4g} s seed {seed}: test R² {runs[-1]['r2_mean']:.3f} "
                          f"({runs[-1]['fit_time_s']:.0f} s, {runs[-1]['steps']} steps)", flush=True)  # fmt: skip
                continue
            model, record = fit(method, sorting, train, seed, None, args)  # without a budget: as long as it needs
            runs.append(scored(method, model, sorting, test, record, seed))
            print(f"  {method:9s} seed {seed}: test R² {runs[-1]['r2_mean']:.3f} ({runs[-1]['fit_time_s']:.0f} s)")
            if method == "wiener":
                continue
            for budget in (b for b in args.budgets if b < record["fit_time_s"]):
                model, capped = fit(method, sorting, train, seed, budget, args)
                runs.append(scored(method, model, sorting, test, capped, seed))
                print(f"  {method:9s} {budget:4g} s seed {seed}: test R² {runs[-1]['r2_mean']:.3f} "
                      f"({runs[-1]['fit_time_s']:.0f} s)", flush=True)  # fmt: skip
        results[method] = {"label": LABELS[method], "runs": runs, "by_budget": by_budget(method, runs, args.budgets)}
        write(results)
    return results


def run_at(method: str, runs: list, budget: float) -> list:
    """The runs standing for ``budget``: POYO's runs of that budget; for a baseline, per seed, its run
    capped at the budget, or its run without a budget when that one took no longer."""
    if method in RECIPES:
        return [r for r in runs if r["budget_s"] == budget]
    chosen = []
    for seed in dict.fromkeys(r["seed"] for r in runs):
        free = next(r for r in runs if r["seed"] == seed and r["capped_s"] is None)
        capped = [r for r in runs if r["seed"] == seed and r["capped_s"] == budget]
        chosen.append(capped[0] if capped and free["fit_time_s"] > budget else free)
    return chosen


def by_budget(method: str, runs: list, budgets: list) -> dict:
    """Per budget: mean ± sample std (ddof=1) of the test R² and the mean wall time of the fits."""
    out = {}
    for budget in budgets:
        chosen = run_at(method, runs, budget)
        values = np.array([r["r2_mean"] for r in chosen])
        out[f"{budget:g}"] = {
            "r2_mean": float(values.mean()),
            "r2_std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": len(values),
            "fit_time_s_mean": float(np.mean([r["fit_time_s"] for r in chosen])),
        }
    return out


def first_budget_reaching(results: dict, method: str, target: str) -> float | None:
    """The first budget at which ``method``'s mean test R² reaches ``target``'s best (its run
    without a budget)."""
    if method not in results or target not in results:
        return None
    best = np.mean([r["r2_mean"] for r in results[target]["runs"] if r.get("capped_s") is None])
    for budget, cell in results[method]["by_budget"].items():
        if cell["r2_mean"] >= best:
            return float(budget)
    return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- tables ------------------------------------------------------------------------------------


def cell(entry: dict) -> str:
    spread = f" ± {entry['r2_std']:.3f}" if entry["r2_std"] is not None else ""
    return f"{entry['r2_mean']:.3f}{spread} ({entry['fit_time_s_mean']:.0f} s)"


def curve_table(results: dict) -> str:
    budgets = list(next(iter(results.values()))["by_budget"])
    lines = ["| method | " + " | ".join(f"{b} s" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for result in results.values():
        lines.append(f"| {result['label']} | " + " | ".join(cell(result["by_budget"][b]) for b in budgets) + " |")
    return "\n".join(lines)


def selection_table(selection: dict) -> str:
    lines = ["| candidate | settings | budget | seeds | validation R² (per seed) | steps | wall s |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict = {}
    for p in selection["points"]:
        groups.setdefault((p["candidate"], p["budget_s"]), []).append(p)
    for (name, budget), points in sorted(groups.items(), key=lambda kv: (kv[0][1], -np.mean([p["r2_mean"] for p in
                                                                                             kv[1]]))):  # fmt: skip
        settings = ", ".join(f"{k}={v}" for k, v in CANDIDATES.get(name, points[0]["recipe"]).items()) or "defaults"
        scores = ", ".join(f"{p['r2_mean']:.3f}" for p in points)
        mean = np.mean([p["r2_mean"] for p in points])
        steps = "/".join(str(p["steps"]) for p in points)
        wall = "/".join(f"{p['fit_time_s']:.0f}" for p in points)
        name = f"**{name}**" if name == selection["chosen"] else name
        row = [name, settings, f"{budget:g} s", str(len(points)), f"{mean:.3f} ({scores})", steps, wall]
        lines.append("| " + " | ".join(row) + " |")
    for b in selection["baselines"]:
        lines.append(f"| {b['method']} (reference) | defaults | - | {b['seed']} | {b['r2_mean']:.3f} | - | "
                     f"{b['fit_time_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def markdown(document: dict) -> str:
    s = document["settings"]
    threads = f"{s['torch_threads']} torch thread{'s' * (s['torch_threads'] != 1)}"
    parts = [
        f"Causal decoding of M1 hand velocity: R² on the last 30 % against training wall time (mean ± sample std "
        f"over seeds, ddof=1; mean wall time of the whole fit in brackets). POYO trained with `max_time_s` = each "
        f"budget; the MLP and GRU without a budget, or with `max_time_s` = the budget where they took longer; the "
        f"Wiener filter once. {threads}; machine: {document['machine']['processor']}, "
        f"{document['machine']['cpu_count']} cores. Commit {document['commit']}, {document['date']}. "
        "Produced by `benchmarks/recalibration.py`.\n"
    ]
    if document.get("curve"):
        parts.append(curve_table(document["curve"]))
        reach = document.get("poyo_fast_reaches_mlp_at_s")
        if {"poyo_fast", "mlp"} <= set(document["curve"]):
            reached = f"{reach:g} s" if reach is not None else "none of these"
            parts.append(f"\nFirst budget at which `recipe='fast'` reaches the MLP's mean R²: {reached}.")
    if document.get("selection"):
        sel = document["selection"]
        parts.append(
            f"\nRecipe chosen on the validation part (the last {s['val_fraction']:.0%} of the training time, "
            f"{sel['validation_seconds']:.0f} s; fitted on the {sel['fit_seconds']:.0f} s before it), seeds "
            f"{sel['seeds']}, best first; chosen: **{sel['chosen']}** "
            f"({'the shipped' if sel['chosen_is_shipped'] else 'NOT the shipped'} `recipe='fast'`):\n"
        )
        parts.append(selection_table(sel))
    return "\n".join(parts) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--budgets", type=float, nargs="+", default=BUDGETS, help="POYO's max_time_s values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--select-budgets", type=float, nargs="+", default=[60.0])
    parser.add_argument("--select-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="last part of the training time the recipe is chosen on")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of recalibration.{json,md}")
    args = parser.parse_args(argv)
    args.preset, args.bin_size = "small", 0.05  # decoding.py's fit_poyo and fit_baseline read these
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sorting, behavior, source = load_dataset(DATASET, args.data_dir)
    train, test = split_covered_time(behavior, TRAIN_FRACTION)
    path = args.out / "recalibration.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    document = {
        "protocol": (
            "M1 hand velocity, causal decoding; train on the first 70 % of the covered time, R² (mean over x and y) "
            "on the last 30 %. POYO with max_time_s = each budget; MLP/GRU without a budget and capped at the "
            "budgets shorter than that; recipe chosen on the last 15 % of the training time."
        ),
        "date": now(),
        "commit": git_commit(),
        "machine": machine(),
        "settings": {
            "dataset": DATASET,
            **source,
            "preset": args.preset,
            "context": "causal",
            "budgets_s": args.budgets,
            "seeds": args.seeds,
            "methods": args.methods,
            "torch_threads": torch.get_num_threads(),
            "train_fraction": TRAIN_FRACTION,
            "val_fraction": args.val_fraction,
            "recipes": RECIPES,
            "fast_recipe": FAST_RECIPE,
            "baselines": {
                "wiener": vars(WienerFilter()),
                "mlp": {k: v for k, v in vars(MLPDecoder()).items() if k not in ("seed", "device")},
                "gru": {k: v for k, v in vars(GRUDecoder()).items() if k not in ("seed", "device")},
            },
        },
        "data": {
            "train_seconds": covered_seconds(train),
            "test_seconds": covered_seconds(test),
            "train_span_s": [train.start_time, train.end_time],
            "test_span_s": [test.start_time, test.end_time],
            "num_units": int(sorting.get_num_units()),
        },
        "selection": previous.get("selection"),
        "curve": previous.get("curve"),
    }

    def write(curve_results=None):
        if curve_results is not None:
            document["curve"] = curve_results
            document["poyo_fast_reaches_mlp_at_s"] = first_budget_reaching(curve_results, "poyo_fast", "mlp")
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        (args.out / "recalibration.md").write_text(markdown(document))

    if "select" in args.parts:
        print(f"choosing the recipe on the validation part ({len(args.candidates)} candidates)", flush=True)
        document["selection"] = select(sorting, train, args)
        write()
    if "curve" in args.parts:
        print(f"the curve: budgets {args.budgets}, seeds {args.seeds}", flush=True)
        curve(sorting, train, test, args, write)
    print()
    print((args.out / "recalibration.md").read_text())
    print(f"wrote {path} and {args.out / 'recalibration.md'}")


if __name__ == "__main__":
    main()
