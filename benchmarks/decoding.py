"""Accuracy benchmark: POYO against the baselines on real and simulated sessions, in two contexts.

Every method is trained on the first 70 % of a session's (running) time and scored by R²
(averaged over the behaviour's dimensions) on the last 30 %, with the same targets for all, in
each of two contexts (``--contexts``):

- ``causal``: every method sees only the spikes before the decoded time. POYO is trained with
  ``context="causal"`` (one window ending at each time); the baselines read the bins ending at it.
- ``centred``: every method also sees the spikes after it. POYO is trained and decoded centred
  (overlapping windows around each time, today's default); the baselines get the same look-ahead,
  ``--centred-lead-s`` (default half of POYO's window: 0.5 s, 10 bins of 50 ms) of bins after the
  time (``leads=``), and the GRU runs both ways over its bins (``bidirectional=True``).

Hyper-parameters are chosen on the training time only. The last ``--val-fraction`` (15 %) of the
training part is held out as a validation part; every point of a small grid per method (``GRIDS``:
POYO's batch size and recipe, ``"default"`` or ``"fast"`` (a warm start from the shipped
``poyo_small_sim_hc``, never trained on these sessions, with a 0.5 s window), and in the centred
context the overlap of its decoding windows; the Wiener filter's history; the MLP's and GRU's
history and dropout) is trained on the first 85 % (``--select-seeds``, POYO with the budget
``--select-budget-s``), scored on the validation part, and the point with the best mean validation
R² is kept. Then each seed (``--seeds``, five by default; the Wiener filter has no seed and runs
once) trains on the whole training part with the chosen values and is scored on the test part,
which no choice ever saw. POYO and the MLP/GRU also stop early on the last 10 % of whatever they
train on (the Wiener filter picks its ridge penalty there).

Each row (dataset, context) reports mean ± sample standard deviation (ddof=1) over seeds, and a
test of the difference between its two best methods: Welch's t-test (unequal variances,
two-sided) on their per-seed R², not paired (a seed number draws unrelated initialisations and
batches in two methods, and every run has the same split, so nothing pairs runs across methods);
against the deterministic Wiener filter (one run), a one-sample t-test of the other's seeds
against its value. ``p >= 0.05`` is flagged "within noise".

    .venv/bin/python benchmarks/decoding.py [--seeds 0 1 2 3 4] [--max-time-s 300] [--contexts causal centred]
    .venv/bin/python benchmarks/decoding.py --datasets m1_velocity --methods wiener mlp --no-select   # quick

Writes benchmarks/results/decoding.json (results, the settings each method was run with, the grid,
validation scores and choice; rows not run this time are kept from earlier runs of this protocol
unless --fresh, and a file of the earlier protocol without contexts is kept under
``protocol_1``) and decoding.md, and prints the table. ``--out`` and ``--stem`` write elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import itertools
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
from spikeinterface_poyo.models.eit import EITDecoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
TRAIN_FRACTION = 0.7
#: last part of the training time held out to choose hyper-parameters
VAL_FRACTION = 0.15
PROTOCOL_VERSION = 2

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
METHODS = ["poyo", "wiener", "mlp", "gru", "eit"]
#: the columns of the earlier protocol's table (EIT came later)
PROTOCOL_1_METHODS = ["poyo", "wiener", "mlp", "gru"]
CONTEXTS = ["causal", "centred"]
LABELS = {"poyo": "POYO {preset}", "wiener": "Wiener", "mlp": "MLP", "gru": "GRU (bidirectional when centred)",
          "eit": "EIT (100 ms bins)"}  # fmt: skip
SHORT = {"poyo": "POYO", "wiener": "Wiener", "mlp": "MLP", "gru": "GRU", "eit": "EIT"}
STOCHASTIC = {"poyo", "mlp", "gru", "eit"}
#: EIT's own bins (the reference's 100 ms), its attention narrowed for the CPU as in eit_transfer.py
EIT_BIN_SIZE = 0.1
EIT_ARCHITECTURE = {"heads": 2, "head_dim": 16}

#: hyper-parameter grids searched on the validation part (the rest stays at each method's default);
#: the Wiener filter also picks its ridge penalty inside, on the last 10 % of what it is fitted on
GRIDS = {
    "poyo": {"batch_size": [16, 32], "recipe": ["default", "fast"]},
    "wiener": {"lags": [3, 5, 10]},
    "mlp": {"lags": [5, 10], "dropout": [0.1, 0.3, 0.5]},
    "gru": {"lags": [5, 10], "dropout": [0.1, 0.2, 0.4]},
    "eit": {"window": [0.5, 0.8]},
}
#: overlaps of POYO's centred decoding windows tried on the validation part (no retraining needed)
POYO_OVERLAPS = [0.25, 0.5, 0.75]
DEFAULT_OVERLAP = 0.5


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


def validation_split(train: sip.Behavior, val_fraction: float = VAL_FRACTION):
    """The training part cut into (fit, validation): the validation part is its last ``val_fraction``
    of covered time. Hyper-parameters are chosen on it; the test part is never looked at."""
    return split_covered_time(train, 1.0 - val_fraction)


def grid_points(grid: dict) -> list[dict]:
    """Every combination of a grid ``{name: [values]}``, in a fixed order."""
    names = sorted(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def leads_for(context: str, args, bin_size: float | None = None) -> int:
    """Bins (of ``bin_size``, the baselines' ``--bin-size`` by default) of look-ahead in
    ``context``: none when causal; ``--centred-lead-s`` (POYO's half window by default) when centred."""
    if context == "causal":
        return 0
    return int(round(args.centred_lead_s / (bin_size or args.bin_size)))


def thinned(behavior: sip.Behavior, step: float) -> sip.Behavior:
    """One valid sample per ``step`` seconds (the first in each), for training at the bins' rate."""
    valid = behavior.valid
    t, values = behavior.timestamps[valid], behavior.values[valid]
    keep = np.r_[True, np.diff(np.floor(t / step)) > 0]
    return sip.Behavior(t[keep], values[keep], name=behavior.name, unit=behavior.unit)


# ---- fitting and decoding one method ----------------------------------------------------------


def make_baseline(method: str, seed: int | None, context: str = "causal", params: dict | None = None, args=None):
    """A fit/predict decoder object for a baseline (POYO is handled apart), with the look-ahead of
    ``context`` and the hyper-parameters ``params``."""
    kwargs = dict(params or {})
    if args is not None:
        kwargs.update(leads=leads_for(context, args), bin_size=args.bin_size)
    if method == "wiener":
        return WienerFilter(**kwargs)
    if method == "mlp":
        return MLPDecoder(seed=seed, **kwargs)
    if method == "gru":
        return GRUDecoder(seed=seed, bidirectional=context == "centred", **kwargs)
    raise ValueError(method)


def decode_poyo(sorting, model, timestamps: np.ndarray, overlap: float = DEFAULT_OVERLAP) -> sip.Behavior:
    """POYO's predictions at ``timestamps`` in the model's context; a centred model's windows overlap
    by ``overlap`` (``sip.decode_behavior`` itself at the default half)."""
    if model.context == "causal" or overlap == DEFAULT_OVERLAP:
        return sip.decode_behavior(sorting, model, timestamps=timestamps, progress_bar=False)
    from spikeinterface_poyo.core.spikes import sorting_to_tokens
    from spikeinterface_poyo.models.poyo.predict import predict_tokens

    session = "session"  # train_decoder's session id
    tokens = sorting_to_tokens(sorting, session_id=session)[0]
    t = np.asarray(timestamps, dtype=np.float64)
    z = predict_tokens(model, tokens, t, session, overlap=overlap)
    stats = model.meta["normalization"][session]
    return sip.Behavior(t, z * np.asarray(stats["std"]) + np.asarray(stats["mean"]), name="decoded")


def fit_poyo(sorting, train, context: str, params: dict, seed: int, budget_s: float, args) -> tuple:
    """(model, record) of POYO trained on ``train`` in ``context`` with ``params``."""
    t0 = time.perf_counter()
    model = sip.train_decoder(
        sorting, train, preset=args.preset, context=context, seed=seed, max_time_s=budget_s, progress_bar=False,
        **params,
    )  # fmt: skip
    training = model.meta["training"]
    record = {k: training[k] for k in ("epochs", "best_epoch", "steps", "stopped_by", "hyperparameters")}
    return model, {"fit_time_s": time.perf_counter() - t0, **record}


def fit_baseline(method: str, sorting, train, context: str, params: dict, seed: int | None, args) -> tuple:
    t0 = time.perf_counter()
    decoder = make_baseline(method, seed, context, params, args).fit(sorting, train)
    record = {"fit_time_s": time.perf_counter() - t0}
    if method == "wiener":
        record["alpha"] = decoder.alpha_
    else:
        record.update(epochs=len(decoder.history_["val_r2"]), best_epoch=decoder.best_epoch_)
    return decoder, record


def fit_eit(sorting, train, context: str, params: dict, seed: int, budget_s: float, args) -> tuple:
    """(model, record) of EIT: trained, as the reference, on one sample per bin, with POYO's budget."""
    t0 = time.perf_counter()
    leads = leads_for(context, args, EIT_BIN_SIZE)
    decoder = EITDecoder(**EIT_ARCHITECTURE, **params, bin_size=EIT_BIN_SIZE, leads=leads, seed=seed,
                         max_time_s=budget_s, device="cpu")  # fmt: skip
    decoder.fit(sorting, thinned(train, EIT_BIN_SIZE))
    record = {"fit_time_s": time.perf_counter() - t0, "epochs": len(decoder.history_["val_r2"]),
              "best_epoch": decoder.best_epoch_}  # fmt: skip
    return decoder, record


def fit(method: str, sorting, train, context: str, params: dict, seed, budget_s: float, args) -> tuple:
    """(fitted model, record) of any method; ``params`` are its hyper-parameters (POYO's decoding
    overlap, which is no training setting, left out)."""
    params = {k: v for k, v in params.items() if k != "overlap"}
    if method == "poyo":
        return fit_poyo(sorting, train, context, params, seed, budget_s, args)
    if method == "eit":
        return fit_eit(sorting, train, context, params, seed, budget_s, args)
    return fit_baseline(method, sorting, train, context, params, seed, args)


def decode(method: str, model, sorting, timestamps, overlap: float = DEFAULT_OVERLAP) -> sip.Behavior:
    if method == "poyo":
        return decode_poyo(sorting, model, timestamps, overlap)
    return model.predict(sorting, timestamps)


# ---- hyper-parameter choice on the validation part --------------------------------------------


def select(method: str, sorting, train, context: str, grid: dict, seeds: list, budget_s: float, args) -> dict:
    """Choose ``method``'s hyper-parameters on the validation part of ``train`` (its last
    ``args.val_fraction``): each grid point is fitted on the rest with each seed, scored on the
    validation part, and the point with the best mean validation R² is chosen. POYO's centred
    overlap is tried on each trained model. The test part is not an argument: it cannot be seen."""
    fit_part, val_part = validation_split(train, args.val_fraction)
    overlaps = POYO_OVERLAPS if method == "poyo" and context == "centred" else [None]
    scores: dict[str, dict] = {}
    for point in grid_points(grid):
        for seed in seeds:
            model, record = fit(method, sorting, fit_part, context, point, seed, budget_s, args)
            shown = []
            for overlap in overlaps:
                params = point if overlap is None else {**point, "overlap": overlap}
                decoded = decode(method, model, sorting, val_part.timestamps, overlap or DEFAULT_OVERLAP)
                r2 = sip.r2_score(val_part, decoded)["mean"]
                key = json.dumps(params, sort_keys=True)
                entry = scores.setdefault(key, {"params": params, "runs": []})
                entry["runs"].append({"seed": seed, "val_r2": r2, "fit_time_s": round(record["fit_time_s"], 1)})
                shown.append(f"{r2:.3f}" if overlap is None else f"{r2:.3f} (overlap {overlap:g})")
            print(f"    select {method} {context} {point} seed {seed}: validation R² {', '.join(shown)} "
                  f"({record['fit_time_s']:.0f} s)", flush=True)  # fmt: skip
    validation = []
    for entry in scores.values():
        values = [r["val_r2"] for r in entry["runs"]]
        validation.append({**entry, "val_r2_mean": float(np.mean(values))})
    best = max(validation, key=lambda e: e["val_r2_mean"])
    return {
        "grid": {**grid, **({"overlap": POYO_OVERLAPS} if overlaps != [None] else {})},
        "seeds": seeds,
        "budget_s": budget_s if method in ("poyo", "eit") else None,
        "fit_seconds": covered_seconds(fit_part),
        "validation_seconds": covered_seconds(val_part),
        "validation_span_s": [val_part.start_time, val_part.end_time],
        "validation": validation,
        "chosen": best["params"],
        "chosen_val_r2": best["val_r2_mean"],
    }


# ---- one method, one context: choose, then train on all of the training part and test -------


def run_method(method: str, sorting, train, test, context: str, args) -> dict:
    """Choose hyper-parameters on the validation part, then train and score each seed; the Wiener
    filter has no seed and runs once."""
    seeds = [None] if method not in STOCHASTIC else args.seeds
    select_seeds = [None] if method not in STOCHASTIC else args.select_seeds
    selection = None
    chosen: dict = {}
    if args.select:
        budget = args.select_budget_s or args.max_time_s
        selection = select(method, sorting, train, context, args.grids[method], select_seeds, budget, args)
        chosen = selection["chosen"]
        print(f"  {method:6s} {context}: chose {chosen} (validation R² {selection['chosen_val_r2']:.3f})", flush=True)
    runs = []
    for seed in seeds:
        model, record = fit(method, sorting, train, context, chosen, seed, args.max_time_s, args)
        decoded = decode(method, model, sorting, test.timestamps, chosen.get("overlap", DEFAULT_OVERLAP))
        score = sip.r2_score(test, decoded)
        runs.append({"seed": seed, "r2": score["r2"], "r2_mean": score["mean"],
                     "n_excluded": score["n_excluded"], **record})  # fmt: skip
        print(f"  {method:6s} {context} seed {seed}: R² {score['mean']:.3f} ({record['fit_time_s']:.0f} s)", flush=True)
    means = np.array([r["r2_mean"] for r in runs])
    settings = {
        "context": context,
        "seeds": seeds,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "chosen": chosen,
    }
    if method == "poyo":
        settings.update(preset=args.preset, max_time_s=args.max_time_s, poyo_context=context)
    elif method == "eit":
        settings.update(EIT_ARCHITECTURE, bin_size=EIT_BIN_SIZE, leads=leads_for(context, args, EIT_BIN_SIZE),
                        max_time_s=args.max_time_s, training_samples="one per bin")  # fmt: skip
    else:
        settings.update(leads=leads_for(context, args), bin_size=args.bin_size)
        if method == "gru":
            settings["bidirectional"] = context == "centred"
    return {
        "settings": settings,
        "selection": selection,
        "runs": runs,
        "r2_mean": float(means.mean()),
        "r2_std": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
        "fit_time_s_mean": float(np.mean([r["fit_time_s"] for r in runs])),
    }


def compare_best_two(methods: dict) -> dict | None:
    """A test of the difference between the two methods of a row with the highest mean R².

    Welch's t-test (two-sided, unequal variances, not paired: see the module docstring) on the
    per-seed R² when both have two runs or more; a one-sample t-test of the seeded method's runs
    against the value of a method with one run (the deterministic Wiener filter); no test when
    neither has two runs. ``within_noise``: p >= 0.05.
    """
    from scipy import stats

    if len(methods) < 2:
        return None
    best, second = sorted(methods, key=lambda m: methods[m]["r2_mean"], reverse=True)[:2]
    a = np.array([r["r2_mean"] for r in methods[best]["runs"]])
    b = np.array([r["r2_mean"] for r in methods[second]["runs"]])
    out = {"best": best, "second": second, "difference": float(a.mean() - b.mean()), "n": [len(a), len(b)]}
    if len(a) > 1 and len(b) > 1:
        res = stats.ttest_ind(a, b, equal_var=False)
        out["test"] = "Welch's t-test, two-sided, unpaired"
    elif len(a) > 1 or len(b) > 1:
        many, one = (a, b) if len(a) > 1 else (b, a)
        res = stats.ttest_1samp(many, one[0])
        out["test"] = "one-sample t-test of the seeded method's runs against the single run, two-sided"
    else:
        out.update(test=None, statistic=None, p_value=None, within_noise=None)
        return out
    p = float(res.pvalue)
    out.update(statistic=float(res.statistic), p_value=p if np.isfinite(p) else None)
    out["within_noise"] = bool(p >= 0.05) if np.isfinite(p) else None
    return out


def run_dataset(name: str, args, done: dict) -> None:
    """Every context and method on one dataset, into ``done[name]``; the results are written after
    each context, so an interrupted run keeps what it did."""
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
        "contexts": {},
    }
    done[name] = entry
    for context in args.contexts:
        row = entry["contexts"].setdefault(context, {"methods": {}})
        for method in args.methods:
            row["methods"][method] = run_method(method, sorting, train, test, context, args)
        row["comparison"] = compare_best_two(row["methods"])
        write_results(done, args)


# ---- tables ------------------------------------------------------------------------------------


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


def format_comparison(c: dict | None) -> str:
    if not c:
        return "-"
    pair = f"{SHORT[c['best']]} vs {SHORT[c['second']]}"
    if c["p_value"] is None:
        return f"{pair}: no test" + (" (one run each)" if c.get("test") is None else " (no spread)")
    kind = "Welch" if c["test"].startswith("Welch") else "1-sample"
    noise = ", within noise" if c["within_noise"] else ""
    return f"{pair}: p = {c['p_value']:.2g} ({kind}){noise}"


CONTEXT_NOTE = {"causal": "causal (past only)", "centred": "centred (past and future)"}


def rows(datasets: dict):
    """(dataset name, dataset entry, context, row) in table order."""
    for name, d in datasets.items():
        for context in CONTEXTS:
            if context in d.get("contexts", {}):
                yield name, d, context, d["contexts"][context]


def markdown_table(datasets: dict) -> str:
    """One row per (dataset, context): R² mean ± std over seeds (number of seeds, mean fit time)
    per method, and the test of the best two."""
    presets = {r["methods"]["poyo"]["settings"]["preset"] for *_, r in rows(datasets) if "poyo" in r["methods"]}
    poyo_label = LABELS["poyo"].format(preset="/".join(sorted(presets)) or "small")
    header = ["dataset", "context", "target", "units", "train / test s", "POYO budget"]
    header += [poyo_label if m == "poyo" else LABELS[m] for m in METHODS] + ["best two"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, d, context, row in rows(datasets):
        covered = f"{d['train_seconds']:.0f} / {d['test_seconds']:.0f}"
        poyo = row["methods"].get("poyo")
        budget = f"{poyo['settings']['max_time_s']:g} s" if poyo else "-"
        cells = [name, CONTEXT_NOTE[context], d["target"], str(d["num_units"]), covered, budget]
        cells += [format_cell(row["methods"].get(m)) for m in METHODS]
        cells.append(format_comparison(row.get("comparison")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choice_table(datasets: dict) -> str:
    """What was chosen on the validation part, per (dataset, context, method)."""
    lines = [
        "| dataset | context | method | chosen on validation | validation R² | grid points |",
        "|---|---|---|---|---|---|",
    ]
    for name, _, context, row in rows(datasets):
        for method in METHODS:
            result = row["methods"].get(method)
            if result is None:
                continue
            sel = result.get("selection")
            if sel is None:
                lines.append(f"| {name} | {context} | {SHORT[method]} | defaults (no selection) | - | - |")
                continue
            chosen = ", ".join(f"{k}={v}" for k, v in sel["chosen"].items())
            score, points = f"{sel['chosen_val_r2']:.3f}", len(sel["validation"])
            lines.append(f"| {name} | {context} | {SHORT[method]} | {chosen} | {score} | {points} |")
    return "\n".join(lines)


def protocol_1_table(datasets: dict) -> str:
    """The rows of the earlier protocol, kept as they were: POYO centred against causal baselines,
    every method at its defaults (no choice on a validation part)."""
    lines = [
        "Earlier protocol (1), unlike contexts: POYO centred (spikes after each time too), the baselines "
        "causal, every method at its defaults:",
        "",
        "| dataset | target | POYO budget | POYO small | Wiener | MLP | GRU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in datasets.items():
        poyo = d["methods"].get("poyo")
        budget = f"{poyo['settings']['max_time_s']:g} s" if poyo else "-"
        cells = [name, d["target"], budget] + [format_cell(d["methods"].get(m)) for m in PROTOCOL_1_METHODS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- writing and merging -----------------------------------------------------------------------


def write_results(datasets: dict, args) -> dict:
    """Merge this run's rows into the JSON and rewrite the tables. A lock file serialises the
    read-merge-write, so runs on different datasets or contexts can go side by side."""
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f".{args.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _merge_and_write(datasets, args)


def _merge_and_write(datasets: dict, args) -> dict:
    path = args.out / f"{args.stem}.json"
    on_disk = json.loads(path.read_text()) if path.exists() else {}
    earlier_protocol = on_disk.get("protocol_1")
    if on_disk and on_disk.get("protocol_version") != PROTOCOL_VERSION:  # the file of the earlier protocol
        earlier_protocol, on_disk = on_disk.get("datasets"), {}
    previous = {} if args.fresh else on_disk.get("datasets", {})
    merged = {}
    for name in [*DATASETS, *(d for d in datasets if d not in DATASETS)]:
        if name in datasets:  # methods run now replace earlier results of the same method and context
            entry = {**datasets[name], "contexts": {}}
            earlier = previous.get(name, {}).get("contexts", {})
            for context in CONTEXTS:
                methods = {**earlier.get(context, {}).get("methods", {}),
                           **datasets[name]["contexts"].get(context, {}).get("methods", {})}  # fmt: skip
                if methods:
                    methods = {m: methods[m] for m in METHODS if m in methods}
                    entry["contexts"][context] = {"methods": methods, "comparison": compare_best_two(methods)}
            merged[name] = entry
        elif name in previous:
            merged[name] = previous[name]
    result = {
        "protocol_version": PROTOCOL_VERSION,
        "protocol": (
            "train on the first 70 % of the (running) time, score R² (mean over dimensions) on the last 30 %; "
            "every row names its context: causal (POYO trained with context='causal', baselines on the bins before "
            "each time) or centred (POYO centred, baselines with leads bins of look-ahead and a bidirectional GRU). "
            f"Hyper-parameters chosen on the last {args.val_fraction:.0%} of the training time (grid in each "
            "method's 'selection'), then every seed retrained on all of the training time with the choice. POYO "
            "and the MLP/GRU early-stop on the last 10 % of what they train on, the Wiener filter picks its ridge "
            "penalty there. Hippocampus targets are restricted to epochs tagged 'run'. Mean ± sample std (ddof=1) "
            "over seeds."
        ),
        "comparison_test": compare_best_two.__doc__.split("\n\n")[1].strip().replace("\n    ", " "),
        "machine": machine(),
        "baselines": {
            "wiener": vars(WienerFilter()),
            "mlp": {k: v for k, v in vars(MLPDecoder()).items() if k not in ("seed", "device")},
            "gru": {k: v for k, v in vars(GRUDecoder()).items() if k not in ("seed", "device")},
            "eit": {k: v for k, v in vars(EITDecoder(**EIT_ARCHITECTURE)).items() if k not in ("seed", "device")},
        },
        "grids": args.grids,
        "poyo_centred_overlaps": POYO_OVERLAPS,
        "centred_lead_s": args.centred_lead_s,
        "datasets": merged,
    }
    if earlier_protocol is not None:
        result["protocol_1"] = earlier_protocol  # the table of the earlier protocol (no contexts), kept as it was
    path.write_text(json.dumps(result, indent=2))
    lead = leads_for("centred", args)
    note = (
        "R² on the last 30 % (mean ± sample std over seeds, ddof=1; number of seeds, mean fit time and torch threads "
        "in brackets; the Wiener filter has no seed). Context of each row: causal = every method sees only spikes "
        "before the decoded time (POYO trained with context='causal'); centred = POYO centred and the baselines "
        f"with {lead} bins ({lead * args.bin_size:g} s) of look-ahead, the GRU bidirectional. Hyper-parameters "
        f"chosen on the last {args.val_fraction:.0%} of the training time (second table). Best two: Welch's t-test "
        "on per-seed R² (one-sample against a single run); p >= 0.05 is within noise. "
        f"Machine: {result['machine']['processor']}, {result['machine']['device']}.\n"
    )
    text = note + "\n" + markdown_table(merged) + "\n\nChosen on the validation part:\n\n" + choice_table(merged)
    if earlier_protocol:
        text += "\n\n" + protocol_1_table(earlier_protocol)
    (args.out / f"{args.stem}.md").write_text(text + "\n")
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-time-s", type=float, default=300.0, help="POYO training budget per run")
    parser.add_argument("--preset", default="small", help="POYO preset")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--contexts", nargs="+", default=CONTEXTS, choices=CONTEXTS)
    parser.add_argument("--select", action=argparse.BooleanOptionalAction, default=True,
                        help="choose hyper-parameters on the validation part (--no-select: defaults)")  # fmt: skip
    parser.add_argument("--select-seeds", type=int, nargs="+", default=[0], help="seeds of each grid point")
    parser.add_argument("--select-budget-s", type=float, default=None, help="POYO budget per grid point "
                        "(default: --max-time-s)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="last part of the training time to choose hyper-parameters on")  # fmt: skip
    parser.add_argument("--grid", type=json.loads, default={},
                        help='JSON overriding grids, e.g. \'{"poyo": {"batch_size": [16]}}\'')  # fmt: skip
    parser.add_argument("--centred-lead-s", type=float, default=None,
                        help="baselines' look-ahead in the centred context (default: half POYO's window)")  # fmt: skip
    parser.add_argument("--bin-size", type=float, default=0.05, help="bin width of every baseline")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--stem", default="decoding", help="name of the result files")
    parser.add_argument("--fresh", action="store_true", help="drop results of datasets not run this time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    unknown = set(args.grid) - set(GRIDS)
    if unknown:
        parser.error(f"--grid names unknown methods {sorted(unknown)}")
    args.grids = {m: {**GRIDS[m], **args.grid.get(m, {})} for m in GRIDS}
    if args.centred_lead_s is None:
        from spikeinterface_poyo.models.poyo import PRESETS

        args.centred_lead_s = PRESETS[args.preset].get("sequence_length", 1.0) / 2
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    done = {}
    for name in args.datasets:
        run_dataset(name, args, done)
    md, js = args.out / f"{args.stem}.md", args.out / f"{args.stem}.json"
    print()
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
