"""EIT transfer benchmark (issue 18): does a pretrained individual module help another animal?

For each pair (source, target), an EIT is trained on the source's first 70 % of time; on the
target, with 1, 2 or 5 minutes or all of its first 70 % labelled, three EITs are trained and
scored on the target's last 30 %:

- ``transfer``: ``EITDecoder.transfer_from(source)``, the source's individual module frozen and a
  new readout of its projections (the reference's transfer);
- ``scratch``: a new EIT with its population module, trained on the labels alone;
- ``random``: the control: a frozen, randomly initialised individual module with the same readout,
  which shows whether the pretraining (rather than the architecture) helps;
- ``poyo_unit_id`` (regression pairs): POYO's answer to the same question. A causal POYO
  (``--poyo-preset``, ``context="causal"``: like EIT it reads only spikes before each time) is
  trained on the same source samples with the source's budget; on the target,
  ``sip.finetune(..., mode="unit_identification")`` learns only the new units' and session's
  embeddings, with the same labelled samples and the same budget per run as EIT.

Pairs for regression (R², mean over dimensions, behaviour at its own rate in the test part):

- ``simulated``: source the first session of the simulated corpus the shipped POYO model was
  pretrained on (seed 0); target ``sim1000_0``, the held-out session of ``transfer.py`` (other
  units, other tunings), with the same split, so its POYO rows there compare;
- ``m1_halves``: real M1 (``m1_center_out.nwb``, hand velocity), its 171 units split at random into
  two disjoint halves taken as two animals (same time: the source trains on the first 70 % only);
- ``hippocampus``: ``linear_track.nwb`` position to ``w_maze.nwb`` position (running epochs).

Pairs for 8-direction classification (accuracy, chance 0.125), ``EITClassifier``, one sample per
trial or reach at 0.4 s into it with a 0.4 s window: ``sim_reach`` (the direction sector of the
simulated velocity at fast samples, source and target two simulated animals), ``chewie`` and
``mihi`` within each session (``scratch`` only), ``chewie_to_mihi`` and ``mihi_to_chewie``.

The model is the reference's EIT with its attention narrowed to 2 heads of width 16 (the
reference: 6 of 64), which CPU training needs (``--reference-width`` for the reference's); the
behaviour is sampled once per 100 ms bin for training. Nothing is tuned: every method runs at
the package defaults (patience 10 on the last 10 % of the labelled part), at most
``--max-epochs`` epochs (``--trial-epochs`` on per-trial samples, with patience 40: a hundred-odd
trials make an epoch one step) and ``--budget-s`` seconds.

    .venv/bin/python benchmarks/eit_transfer.py --datasets simulated --seeds 0 1 2
    .venv/bin/python benchmarks/eit_transfer.py --datasets chewie mihi chewie_to_mihi mihi_to_chewie sim_reach

Writes benchmarks/results/eit_transfer_<dataset>.json and .md per dataset and prints the table,
with Welch's t-test p-values of transfer against each other method (``--tables`` rewrites the tables
from the saved JSON).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine
from decoding import covered_seconds, load_dataset, split_covered_time, thinned
from scipy.stats import ttest_ind
from transfer import heldout_session, labelled_seconds

import spikeinterface_poyo as sip
from spikeinterface_poyo.io.nwb_read import read_nwb_trials
from spikeinterface_poyo.simulation import simulate_corpus
from spikeinterface_poyo.training.config import TrainingConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
TRAIN_FRACTION = 0.7
REGRESSION = ["simulated", "m1_halves", "hippocampus"]
CLASSIFICATION = ["sim_reach", "chewie", "mihi", "chewie_to_mihi", "mihi_to_chewie"]
AMOUNTS = ["1min", "2min", "5min", "all"]
METHODS = ["transfer", "scratch", "random"]
#: POYO unit identification, the comparison on the regression pairs (POYO decodes no classes)
POYO_METHODS = ["poyo_unit_id"]
LABELS = {"transfer": "EIT transfer", "scratch": "EIT from scratch", "random": "EIT, frozen random individual",
          "poyo_unit_id": "POYO unit identification"}  # fmt: skip
#: trials: the sample 0.4 s into each, its window the 0.4 s before (95 % of reaches last longer)
TRIAL_WINDOW = 0.4


def regression_pair(name: str, data: Path):
    """(source sorting, source behaviour, target sorting, target behaviour, description)."""
    if name == "simulated":
        source = simulate_corpus(1, seed=0, duration=(300.0, 600.0))[0]
        target, target_behavior, described = heldout_session("sim1000_0", quick=False)
        return source["sorting"], source["behavior"], target, target_behavior, {"target": described}
    if name == "m1_halves":
        sorting, behavior, described = load_dataset("m1_velocity", data)
        ids = sorting.unit_ids[np.random.default_rng(0).permutation(len(sorting.unit_ids))]
        half = len(ids) // 2
        a, b = sorting.select_units(ids[:half]), sorting.select_units(ids[half:])
        return a, behavior, b, behavior, {"data": described, "split": "units permuted with seed 0, halved"}
    if name == "hippocampus":
        source, source_behavior, a = load_dataset("linear_track_position", data)
        target, target_behavior, b = load_dataset("w_maze_position", data)
        return source, source_behavior, target, target_behavior, {"source": a, "target": b}
    raise ValueError(f"Unknown regression pair {name!r}; choose from {REGRESSION}.")


def direction_samples(behavior: sip.Behavior, sectors: int = 8) -> sip.Behavior:
    """The direction sector of the velocity at the fast (above-median speed) samples, at 100 ms."""
    coarse = thinned(behavior, 0.1)
    vx, vy = coarse.values.T
    speed = np.hypot(vx, vy)
    fast = speed > np.median(speed)
    sector = np.floor((np.arctan2(vy, vx) + np.pi) / (2 * np.pi / sectors)) % sectors
    return sip.Behavior(coarse.timestamps[fast], sector[fast], name="direction")


def trial_samples(file: str, data: Path):
    """(sorting, labels): each trial's target (0-7) at 0.4 s after its start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sorting = sip.read_nwb_units(data / file)
        trials = read_nwb_trials(data / file)
    return sorting, sip.Behavior(trials.start_time.to_numpy() + TRIAL_WINDOW, trials.target.to_numpy(), name="target")


def classification_pair(name: str, data: Path):
    """(source sorting, source labels or None, target sorting, target labels, description)."""
    files = {"chewie": "chewie_20131003_center_out.nwb", "mihi": "mihi_20140303_center_out.nwb"}
    if name == "sim_reach":
        kwargs = dict(duration=600.0, num_units=40, behavior="reaching", behavior_rate=50.0)
        (a, ab), (b, bb) = (sip.simulate_session(**kwargs, seed=seed) for seed in (10, 11))
        return a, direction_samples(ab), b, direction_samples(bb), {"simulated": {**kwargs, "seeds": [10, 11]}}
    if name in files:
        target, labels = trial_samples(files[name], data)
        return None, None, target, labels, {"file": files[name]}
    source_name, target_name = name.split("_to_")
    source, source_labels = trial_samples(files[source_name], data)
    target, labels = trial_samples(files[target_name], data)
    return source, source_labels, target, labels, {"source": files[source_name], "target": files[target_name]}


def split_samples(behavior: sip.Behavior, fraction: float):
    """The first ``fraction`` of the samples and the rest (for per-trial samples)."""
    cut = int(round(fraction * len(behavior.timestamps)))
    part = [(behavior.timestamps[s], behavior.values[s]) for s in (slice(0, cut), slice(cut, None))]
    return tuple(sip.Behavior(t, v, name=behavior.name) for t, v in part)


def poyo_source(sorting, behavior: sip.Behavior, args):
    """A causal POYO trained on the source, with the source EIT's samples and budget."""
    return sip.train_decoder(sorting, behavior, preset=args.poyo_preset, context="causal", seed=0,
                             max_time_s=args.source_budget_s, progress_bar=False, device="cpu")  # fmt: skip


def run_poyo_unit_id(source_poyo, sorting, labelled, test, seed, args) -> dict:
    """Unit identification of a copy of the source POYO on the target's labelled samples."""
    model = copy.deepcopy(source_poyo)
    t0 = time.perf_counter()
    sip.finetune(model, sorting, labelled, mode="unit_identification", session_id="target", seed=seed,
                 max_time_s=args.budget_s, progress_bar=False, device="cpu")  # fmt: skip
    fit_time = time.perf_counter() - t0
    decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, session_id="target", progress_bar=False)
    stage = model.meta["training"]["finetuning"][-1]["stages"][-1]
    return {"seed": seed, "score": float(sip.r2_score(test, decoded)["mean"]), "epochs": stage["epochs"],
            "best_epoch": stage["best_epoch"], "fit_time_s": round(fit_time, 1)}  # fmt: skip


def run_method(method, cls, source_model, sorting, labelled, test, seed, args) -> dict:
    if method == "poyo_unit_id":
        return run_poyo_unit_id(args.source_poyo, sorting, labelled, test, seed, args)
    budget = dict(seed=seed, **args.schedule, max_time_s=args.budget_s, device="cpu")
    t0 = time.perf_counter()
    if method == "transfer":
        model = cls.transfer_from(source_model, **budget)
    elif method == "scratch":
        model = cls(**args.architecture, **budget)
    else:
        model = cls(**args.architecture, **budget, population=False, freeze_individual=True)
    model.fit(sorting, labelled)
    fit_time = time.perf_counter() - t0
    return {"seed": seed, "score": float(model.score(sorting, test)), "epochs": len(model.history_["train_loss"]),
            "best_epoch": model.best_epoch_, "fit_time_s": round(fit_time, 1)}  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    scores = np.array([r["score"] for r in runs])
    return {"runs": runs, "mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0}


def run_dataset(name: str, args) -> dict:
    classify = name in CLASSIFICATION
    cls = sip.EITClassifier if classify else sip.EITDecoder
    if classify:
        source, source_y, target, target_y, described = classification_pair(name, args.data_dir)
        source_train = None if source is None else source_y
        train, test = split_samples(target_y, TRAIN_FRACTION)
        amounts, methods = ["all"], [m for m in (["scratch"] if source is None else METHODS) if m in args.methods]
        architecture = {**args.architecture, "window": TRIAL_WINDOW}
        # a hundred-odd trials make one step an epoch: more epochs, and patience for a noisy validation
        args.schedule = {"max_epochs": args.trial_epochs, "patience": 40}
    else:
        source, source_y, target, target_y, described = regression_pair(name, args.data_dir)
        source_train = thinned(split_covered_time(source_y, TRAIN_FRACTION)[0], 0.1)
        train, test = split_covered_time(target_y, TRAIN_FRACTION)
        amounts, architecture = args.amounts, args.architecture
        methods = [m for m in METHODS + POYO_METHODS if m in args.methods]
        args.schedule = {"max_epochs": args.max_epochs, "patience": 10}
    args.architecture = architecture
    result = {
        "dataset": name,
        "metric": "accuracy" if classify else "r2_mean",
        "data": described,
        "target_units": int(target.get_num_units()),
        "source_units": None if source is None else int(source.get_num_units()),
        "settings": {
            "architecture": architecture,
            **args.schedule,
            "budget_s": args.budget_s,
            "seeds": args.seeds,
            "source_seed": 0,
            "commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },  # fmt: skip
        "machine": machine(),
        "amounts": {},
    }
    earlier = RESULTS / f"eit_transfer_{name}.json"
    if earlier.exists():  # cells of an earlier run with the same settings are kept
        on_disk = json.loads(earlier.read_text())
        keys = ("architecture", "budget_s", "seeds", "max_epochs")
        if all(on_disk["settings"].get(k) == result["settings"][k] for k in keys):
            result["amounts"] = on_disk["amounts"]
            result.update({k: on_disk[k] for k in ("source", "poyo_source") if k in on_disk})

    def missing(method: str) -> bool:
        """Whether some amount still lacks runs of ``method`` (with a source to transfer from)."""
        done = [result["amounts"].get(a, {}).get("methods", {}).get(method, {}).get("runs", []) for a in amounts]
        return source is not None and method in methods and any(len(runs) < len(args.seeds) for runs in done)

    source_model = None
    if missing("transfer"):
        t0 = time.perf_counter()
        source_model = cls(**architecture, **args.schedule, max_time_s=args.source_budget_s, seed=0)
        source_model.fit(source, source_train)
        result["source"] = {"fit_time_s": round(time.perf_counter() - t0, 1), "best_epoch": source_model.best_epoch_}
    if missing("poyo_unit_id"):
        t0 = time.perf_counter()
        args.source_poyo = poyo_source(source, source_train, args)
        training = args.source_poyo.meta["training"]
        result["poyo_source"] = {"preset": args.poyo_preset, "context": "causal", "fit_time_s":
                                 round(time.perf_counter() - t0, 1), "best_epoch": training["best_epoch"]}  # fmt: skip
        result["settings"]["poyo_preset"] = args.poyo_preset
    print(f"{name}: target {result['target_units']} units, source {result['source_units']}", flush=True)
    for amount in amounts:
        if classify:
            labelled = train
        else:
            seconds = labelled_seconds(amount, covered_seconds(train))
            if amount != "all" and seconds >= covered_seconds(train):
                print(f"  {amount}: the training part is only {covered_seconds(train):.0f} s; see 'all'")
                continue
            labelled = train if amount == "all" else split_covered_time(train, seconds / covered_seconds(train))[0]
            labelled = thinned(labelled, 0.1)
        cell = result["amounts"].setdefault(amount, {"labelled_samples": len(labelled.timestamps), "methods": {}})
        for method in methods:
            if method in cell["methods"] and len(cell["methods"][method]["runs"]) == len(args.seeds):
                continue  # done in an earlier run
            runs = [run_method(method, cls, source_model, target, labelled, test, s, args) for s in args.seeds]
            cell["methods"][method] = summarise(runs)
            print(f"  {amount:>5s} {method:9s} {cell['methods'][method]['mean']:.3f} ± "
                  f"{cell['methods'][method]['std']:.3f}", flush=True)  # fmt: skip
            write(result)
    return result


def welch_p(cell: dict, a: str, b: str) -> str:
    """Welch's t-test p-value of methods ``a`` and ``b`` over seeds ('' when either is missing)."""
    if a not in cell["methods"] or b not in cell["methods"] or len(cell["methods"][a]["runs"]) < 2:
        return ""
    scores = [[r["score"] for r in cell["methods"][m]["runs"]] for m in (a, b)]
    return f"{ttest_ind(*scores, equal_var=False).pvalue:.2g}"


def markdown(result: dict) -> str:
    methods = [m for m in METHODS + POYO_METHODS if any(m in c["methods"] for c in result["amounts"].values())]
    tests = [("transfer", m) for m in methods if m != "transfer"] if "transfer" in methods else []
    header = [LABELS[m] for m in methods] + [f"p, {a} vs {b}" for a, b in tests]
    lines = [f"| labelled | {' | '.join(header)} |", "|---|" + "---|" * len(header)]
    for amount, cell in result["amounts"].items():
        row = [f"{cell['methods'][m]['mean']:.3f} ± {cell['methods'][m]['std']:.3f}" if m in cell["methods"] else ""
               for m in methods]  # fmt: skip
        row += [welch_p(cell, a, b) for a, b in tests]
        lines.append(f"| {amount} ({cell['labelled_samples']} samples) | {' | '.join(row)} |")
    s = result["settings"]
    head = (
        f"{result['dataset']}: {result['metric']} on the target's last 30 %, mean ± sample SD over seeds "
        f"{s['seeds']}; target {result['target_units']} units, source {result['source_units']}. "
        f"Architecture {s['architecture']}, at most {s['max_epochs']} epochs and {s['budget_s']:g} s a run."
    )
    if "poyo_source" in result:
        defaults = TrainingConfig()
        head += (f" POYO: preset {result['poyo_source']['preset']}, causal, trained on the source's samples, then "
                 f"unit identification at its defaults (at most {defaults.max_epochs} epochs, patience "
                 f"{defaults.patience}), same budget.")  # fmt: skip
    return head + "\n\n" + "\n".join(lines) + "\n"


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"eit_transfer_{result['dataset']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=REGRESSION + CLASSIFICATION,
                        choices=REGRESSION + CLASSIFICATION)  # fmt: skip
    parser.add_argument("--amounts", nargs="+", default=AMOUNTS, help="labelled time: 1min, 2min, 5min, all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--trial-epochs", type=int, default=300, help="epochs on per-trial classification")
    parser.add_argument("--budget-s", type=float, default=60.0, help="wall-clock budget of each target run")
    parser.add_argument("--source-budget-s", type=float, default=300.0, help="budget of the source's training")
    parser.add_argument("--methods", nargs="+", default=METHODS + POYO_METHODS, choices=METHODS + POYO_METHODS)
    parser.add_argument("--poyo-preset", default="small", help="preset of the source POYO")
    parser.add_argument("--reference-width", action="store_true", help="the reference's 6 heads of width 64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tables", action="store_true", help="only rewrite the tables from the saved JSON")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args(argv)
    args.architecture = {} if args.reference_width else {"heads": 2, "head_dim": 16}
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.tables:
        for name in args.datasets:
            path = RESULTS / f"eit_transfer_{name}.json"
            if path.exists():
                result = json.loads(path.read_text())
                write(result)
                print(markdown(result))
        return
    torch.set_num_threads(args.threads)
    base = dict(args.architecture)
    for name in args.datasets:
        args.architecture = dict(base)
        result = run_dataset(name, args)
        print(markdown(result))


if __name__ == "__main__":
    main()
