"""MtM benchmark, in the shape of the paper's Table 1: the NDT1 ``temporal`` baseline against
each single masking scheme and MtM (all schemes), in bits per spike on held-out windows for
co-smoothing, forward prediction, inter- and intra-region prediction; a smoothed-spikes ridge
baseline of co-smoothing; behaviour decoded from MtM's rates on M1; and multi-session
pretraining then finetuning against training on the held-out session alone.

Every model is trained for the same number of steps (no time budget, so results do not depend
on the machine's load), keeps the weights with the best validation NLL of masked entries, and
is scored on the last 30 % of each session (windows or trials never seen in training).

    .venv/bin/python benchmarks/mtm.py [--seeds 0 1] [--steps 600] [--parts sim human m1 multi]

Writes benchmarks/results/mtm.json (after every run, so a partial run keeps what it measured)
and benchmarks/results/mtm.md, and prints the tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import warnings
from pathlib import Path

import numpy as np
from _provenance import git_commit, machine

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.metrics import bits_per_spike
from spikeinterface_poyo.models.mtm import (
    bin_session,
    decode_from_rates,
    evaluate_mtm,
    finetune_mtm,
    infer_rates,
    pretrain_mtm,
    smoothing_cosmoothing,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
MODELS = {
    "temporal (NDT1)": "temporal",
    "neuron": "neuron",
    "causal": "causal",
    "intra_region": "intra_region",
    "inter_region": "inter_region",
    "MtM": "mtm",
}
# dropout 0.4 (the paper's): on M1's validation windows it gave 0.039 co-smoothing bits per spike against
# 0.026 at 0.1 (800 steps each)
ARCHITECTURE = {"dim": 64, "depth": 2, "heads": 4, "dropout": 0.4, "position": "rope"}


def training(steps: int, seed: int) -> dict:
    epochs = max(1, steps // 50)
    return dict(seed=seed, max_epochs=epochs, windows_per_epoch=50 * 16, batch_size=16, lr=5e-3,
                max_time_s=None, patience=epochs, progress_bar=False)  # fmt: skip


def read(name: str):
    import spikeinterface.extractors as se

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return se.read_nwb_sorting(str(DATA / name))


def trials(name: str):
    import pynwb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(DATA / name), "r") as io:
            return io.read().trials.to_dataframe()


def first_spike(sorting) -> float:
    return float(sorting.to_spike_vector()["sample_index"].min() / sorting.sampling_frequency)


def summary(result: dict) -> dict:
    """Means only (per-neuron values stay out of the JSON)."""
    out = {}
    for task, value in result.items():
        if isinstance(value, dict) and "mean" in value:
            out[task] = {"mean": value["mean"], "pooled": value.get("pooled"), "n_excluded": value["n_excluded"]}
        elif isinstance(value, dict) and task != "prompts":
            out[task] = {region: {"mean": v["mean"]} for region, v in value.items()}
        else:
            out[task] = value
    return out


def oracle(session, truth) -> dict:
    """Bits per spike of the true rates (simulation), the ceiling of every task."""
    test, starts = session.windows("test")
    first = int(round(starts[0] / session.bin_size))
    rates = truth["rates"][first : first + test.size // test.shape[2]].reshape(test.shape)
    cut = test.shape[1] - max(1, int(round(0.1 * test.shape[1])))
    return {
        "all_bins": bits_per_spike(test, rates)["mean"],
        "forward": bits_per_spike(test[:, cut:], rates[:, cut:])["mean"],
    }


def table_part(name: str, session, seeds, steps, models, extra=None) -> dict:
    rows = {}
    for label in models:
        runs = []
        for seed in seeds:
            tic = time.perf_counter()
            architecture = dict(ARCHITECTURE, **({"position": "learned"} if "learned" in label else {}))
            schemes = MODELS[label.replace(" (learned positions)", "")]
            model = pretrain_mtm(session, schemes=schemes, **architecture, **training(steps, seed))
            result = summary(evaluate_mtm(model, session))
            result["train_time_s"] = round(time.perf_counter() - tic, 1)
            result["schemes_used"] = model.meta["training"]["schemes"][session.session_id]
            runs.append(result)
            print(f"{name} {label} seed {seed}: co-smoothing {result['co_smoothing']['mean']:.3f}", flush=True)
            if extra is not None:
                extra(label, seed, model)
        rows[label] = runs
    return rows


def mean_sd(values) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return "-"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def markdown(results: dict) -> str:
    lines = [f"# MtM benchmark (commit {results['commit']}, {results['date']})", ""]
    for part, data in results["parts"].items():
        if "rows" not in data:
            continue
        regions = sorted(
            {r for runs in data["rows"].values() for run in runs for r in run.get("inter_region", {})} - {"all"}
        )
        head = ["model", "co-smoothing", "forward"] + [f"inter {r}" for r in regions] + [f"intra {r}" for r in regions]
        lines += [f"## {part}: {data['description']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, runs in data["rows"].items():
            cells = [label, mean_sd(r["co_smoothing"]["mean"] for r in runs),
                     mean_sd(r["forward_prediction"]["mean"] for r in runs)]  # fmt: skip
            for task in ("inter_region", "intra_region"):
                cells += [mean_sd(r.get(task, {}).get(reg, {}).get("mean") for r in runs) for reg in regions]
            lines.append("| " + " | ".join(cells) + " |")
        if "smoothing" in data:
            lines.append(f"| smoothed spikes + ridge | {data['smoothing']['mean']:.3f} | | |")
        if "oracle" in data:
            lines.append(f"| true rates (ceiling, all bins / forward bins) | {data['oracle']['all_bins']:.3f} | "
                         f"{data['oracle']['forward']:.3f} | |")  # fmt: skip
        lines.append("")
        if "behavior" in data:
            lines += ["Hand velocity R² (ridge readout, last 30 %):", ""]
            for feature, runs in data["behavior"].items():
                lines.append(f"- {feature}: {mean_sd(r['mean'] for r in runs)}")
            lines.append("")
    multi = results["parts"].get("multi", {})
    if multi:
        lines += ["## multi-session: co-smoothing bits per spike on the held-out session", ""]
        lines += ["| held out | pretrained on | from scratch | pretrained + finetuned |", "|---|---|---|---|"]
        for held, data in multi.items():
            if held == "run":  # provenance of a merged part
                continue
            lines.append(f"| {held} | {', '.join(data['pretrained_on'])} | {mean_sd(data['scratch'])} | "
                         f"{mean_sd(data['finetuned'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def save(results: dict, name: str = "mtm") -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1, default=float))
    (RESULTS / f"{name}.md").write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--parts", nargs="*", default=["sim", "human", "m1", "multi"])
    parser.add_argument("--real-models", nargs="+", choices=list(MODELS), help="models of the human and m1 parts")
    parser.add_argument("--output", default="mtm", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--merge", nargs="*", default=[], help="results files whose parts are copied into this one")
    args = parser.parse_args()
    path = RESULTS / f"{args.output}.json"
    results = json.loads(path.read_text()) if path.exists() else {"parts": {}}
    options = " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items())
    split = "first 70 % train (last 10 % of it validation), last 30 % test"
    settings = {"architecture": ARCHITECTURE, "training": training(args.steps, 0), "bin_size": 0.02, "num_bins": 100,
                "mask_ratio": 0.3, "split": split}  # fmt: skip
    if args.parts:  # a merge-only call keeps the provenance of the run it merges into
        results.update(commit=git_commit(), date=datetime.date.today().isoformat(), machine=machine(),
                       command=f"benchmarks/mtm.py {options}", settings=settings)  # fmt: skip
    seeds = args.seeds
    for other in args.merge:  # parts run separately (for example in parallel), with their own provenance
        merged = json.loads((RESULTS / f"{other}.json").read_text())
        for name, part in merged["parts"].items():
            results["parts"][name] = part | {"run": {k: merged[k] for k in ("commit", "date", "command")}}
    save_as = args.output

    if "sim" in args.parts:
        sorting, truth = sip.simulate_regions(duration=600, units_per_region=20, seed=100)
        session = bin_session(sorting, "simulated_regions")
        structure = "source, driven (lag 0.1 s), independent"
        part = {"description": f"simulate_regions(duration=600, units_per_region=20, seed=100): {structure}"}
        part["oracle"], part["smoothing"] = oracle(session, truth), smoothing_cosmoothing(session)
        part["smoothing"].pop("per_neuron")
        models = [*MODELS, "MtM (learned positions)"]
        part["rows"] = table_part("sim", session, seeds, args.steps, models)
        results["parts"]["sim"] = part
        save(results, save_as)

    if "human" in args.parts:
        session = bin_session(read("human_mtl_two_regions.nwb"), "human_mtl")
        part = {"description": "human_mtl_two_regions.nwb: right hippocampus (25 units) and right amygdala (10)"}
        part["smoothing"] = smoothing_cosmoothing(session)
        part["smoothing"].pop("per_neuron")
        part["rows"] = table_part("human", session, seeds, args.steps, args.real_models or list(MODELS))
        results["parts"]["human"] = part
        save(results, save_as)

    # M1 at MtM's 20 ms, and at the 50 ms the source was binned at (its spikes are placed at random
    # inside 50 ms bins, so finer bins only add noise)
    for name, bin_size, num_bins, lags in (("m1", 0.02, 100, 12), ("m1_50ms", 0.05, 40, 5)):
        if name not in args.parts:
            continue
        sorting = read("m1_center_out.nwb")
        behavior = sip.read_nwb_behavior(DATA / "m1_center_out.nwb", "hand_velocity")
        session = bin_session(sorting, name, bin_size=bin_size, num_bins=num_bins)
        part = {
            "description": f"m1_center_out.nwb at {bin_size * 1e3:g} ms x {num_bins} bins: one region (M1), so MtM "
            "falls back to neuron + causal masking"
        }
        part["smoothing"] = smoothing_cosmoothing(session)
        part["smoothing"].pop("per_neuron")
        from spikeinterface_poyo.models.mtm.rates import session_counts

        counts, t0 = session_counts(sorting, session.unit_ids, bin_size)
        centres = t0 + (np.arange(len(counts)) + 0.5) * bin_size
        raw = sip.Behavior(centres, counts / bin_size, name="counts", unit="Hz", dimension_names=session.unit_ids)
        from scipy.ndimage import gaussian_filter1d

        smooth = sip.Behavior(centres, gaussian_filter1d(counts, 0.05 / bin_size, axis=0) / bin_size, name="smoothed",
                              unit="Hz", dimension_names=session.unit_ids)  # fmt: skip
        window = f"centred {num_bins * bin_size:g} s windows"
        rows_of = {
            "counts": f"ridge on counts ({lags} x {bin_size * 1e3:g} ms lags)",
            "smoothed": "ridge on Gaussian-smoothed counts (sigma 50 ms, centred)",
            "mtm": f"ridge on MtM rates ({window})",
        }
        behavior_rows = {
            rows_of["counts"]: [decode_from_rates(raw, behavior, lags=lags)],
            rows_of["smoothed"]: [decode_from_rates(smooth, behavior, lags=lags)],
            rows_of["mtm"]: [],
        }

        def decode(
            label, seed, model, spikes=sorting, target=behavior, sid=name, lags=lags, out=behavior_rows[rows_of["mtm"]]
        ):
            if label == "MtM":
                rates = infer_rates(spikes, model, session_id=sid, progress_bar=False)
                out.append(decode_from_rates(rates, target, lags=lags))

        models = args.real_models or ["temporal (NDT1)", "neuron", "causal", "MtM"]
        part["rows"] = table_part(name, session, seeds, args.steps, models, decode)
        part["behavior"] = behavior_rows
        results["parts"][name] = part
        save(results, save_as)

    if "multi" in args.parts:
        multi = {}
        sim = {f"sim_{i}": sip.simulate_regions(duration=600 if i < 3 else 120, units_per_region=20, seed=200 + i)[0]
               for i in range(4)}  # fmt: skip
        groups = {"sim_3": (["sim_0", "sim_1", "sim_2"], {k: bin_session(v, k) for k, v in sim.items()})}
        chewie, mihi = "chewie_20131003_center_out.nwb", "mihi_20140303_center_out.nwb"
        reach = {name: bin_session(read(f), name, bin_size=0.05, num_bins=10, events=trials(f), event_offset=0.0)
                 for name, f in (("chewie", chewie), ("mihi", mihi))}  # fmt: skip
        groups["chewie"], groups["mihi"] = (["mihi"], reach), (["chewie"], reach)
        tracks = {}
        for name in ("linear_track", "w_maze"):
            s = read(f"{name}.nwb")
            tracks[name] = bin_session(s, name, time_range=(first_spike(s), np.inf))
        groups["linear_track"], groups["w_maze"] = (["w_maze"], tracks), (["linear_track"], tracks)
        for held, (sources, sessions) in groups.items():
            entry = {"pretrained_on": sources, "scratch": [], "finetuned": []}
            for seed in seeds:
                pre = pretrain_mtm([sessions[s] for s in sources], **ARCHITECTURE, **training(args.steps, seed))
                tuned = finetune_mtm(pre, sessions[held], **training(args.steps // 2, seed))
                scratch = pretrain_mtm(sessions[held], **ARCHITECTURE, **training(args.steps // 2, seed))
                tasks = ("co_smoothing",)
                entry["finetuned"].append(evaluate_mtm(tuned, sessions[held], tasks=tasks)["co_smoothing"]["mean"])
                entry["scratch"].append(evaluate_mtm(scratch, sessions[held], tasks=tasks)["co_smoothing"]["mean"])
                scores = f"scratch {entry['scratch'][-1]:.3f} finetuned {entry['finetuned'][-1]:.3f}"
                print(f"multi {held} seed {seed}: {scores}", flush=True)
            multi[held] = entry
            results["parts"]["multi"] = multi
            save(results, save_as)
    save(results, save_as)
    print(markdown(results))


if __name__ == "__main__":
    main()
