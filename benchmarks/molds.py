"""MoLDS benchmark (issue 19).

**synthetic**: the two settings of Gong and Saxena (ICLR 2026), ``small`` (K = 3, n = 2, m = p = 1)
and ``large`` (K = 6, n = 3, m = p = 2, D = 0), each system's impulse response of unit energy and
noise ``Q = R = sigma^2 I`` (``sigma`` the noise level; see ``analysis/molds/synthetic.py``). For each
seed a new mixture is drawn, trials are sampled for fitting and, separately, for testing; three
methods are fitted: the pure tensor estimate (``max_iter=0``), Tensor-EM and randomly initialised
EM (the same EM, the same iteration cap and tolerance). Reported per method: the relative
Markov-parameter error after Hungarian matching (mean over systems, ``2 n + 2`` lags), the largest
weight error, EM iterations, clustering accuracy on the held-out trials after matching, seconds.
Medians and mean ± sample standard deviation over seeds, and a Wilcoxon signed-rank test of
Tensor-EM against random EM per row.

**real**: ``cluster_trials`` on the two centre-out sessions (target direction) and the
reach-to-grasp session (grip type). The number of systems is chosen by validation BIC on 30 % of
the trials; the trial labels are used only afterwards, for the mutual information of clusters
with labels and its permutation p-value (1000 shuffles). Every input/output design in the grid is
reported, so that no design is chosen on the labels.

    .venv/bin/python benchmarks/molds.py [--parts synthetic real] [--seeds 10] [--settings small:0.3 ...]

Writes benchmarks/results/molds.json (after every run) and molds.md. Rows run as separate processes
(``--settings ... --out results/molds_a``) are joined with ``--merge results/molds_a.json ...``.
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
from scipy.stats import wilcoxon

import spikeinterface_poyo as sip
from spikeinterface_poyo.analysis.molds import MoLDS
from spikeinterface_poyo.analysis.molds.synthetic import (
    SETTINGS,
    clustering_accuracy,
    random_mixture,
    recovery_errors,
    sample_trials,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
#: (setting, noise level, training trials, test trials, trial length)
SYNTHETIC = [
    ("small", 0.1, 1000, 500, 200),
    ("small", 0.3, 1000, 500, 200),
    ("small", 0.5, 1000, 500, 200),
    ("large", 0.3, 2000, 500, 200),
]
EM = dict(max_iter=150, tol=1e-5)
METHODS = {
    "tensor": dict(init="tensor", max_iter=0),
    "tensor_em": dict(init="tensor"),
    "random_em": dict(init="random"),
}


def synthetic_run(setting, noise, n_train, n_test, length, seed, max_iter) -> dict:
    weights, systems = random_mixture(setting, seed, noise=noise)
    U, Y, _ = sample_trials(weights, systems, n_train, length, 1000 + seed)
    U_test, Y_test, labels_test = sample_trials(weights, systems, n_test, length, 2000 + seed)
    cfg = SETTINGS[setting]
    lags = 2 * cfg["state_dim"] + 2
    true = np.stack([s.markov_parameters(lags) for s in systems])
    out = {}
    for name, kwargs in METHODS.items():
        start = time.perf_counter()
        model = MoLDS(
            cfg["n_components"],
            cfg["state_dim"],
            direct_term=cfg["direct_term"],
            random_state=seed,
            **{**EM, "max_iter": max_iter, **kwargs},
        ).fit(U, Y)
        seconds = time.perf_counter() - start
        errors = recovery_errors(weights, true, model.weights_, model.markov_parameters(lags))
        out[name] = {
            "markov_error": errors["markov_error"],
            "weight_error": errors["weight_error"],
            "em_iterations": model.n_iter_,
            "converged": bool(model.converged_),
            "max_iter": model.max_iter,
            "test_accuracy": clustering_accuracy(labels_test, model.predict(U_test, Y_test)),
            "train_log_likelihood": model.log_likelihood_history_[-1],
            "seconds": seconds,
        }
    return out


def real_designs():
    """(session, label column, bin size, design name, inputs, n_pcs) for every design of the grid."""
    for name, bin_size in (("chewie_20131003_center_out", 0.05), ("mihi_20140303_center_out", 0.1)):
        path = DATA / f"{name}.nwb"
        velocity = sip.read_nwb_behavior(path, "hand_velocity")
        speed = sip.Behavior(velocity.timestamps, np.linalg.norm(velocity.values, axis=1), name="hand_speed")
        for design, inputs in (("hand speed", speed), ("no inputs", None), ("hand velocity", velocity)):
            for n_pcs in (3, 6):
                yield name, "target", bin_size, design, inputs, n_pcs
    path = DATA / "reach_to_grasp.nwb"
    trials = sip.read_nwb_trials(path)
    for design, inputs in (("cue pulse", sip.event_inputs(trials, ["cue_on_time"], 0.1)), ("no inputs", None)):
        for n_pcs in (3, 6):
            yield "reach_to_grasp", "grip_type", 0.1, design, inputs, n_pcs


def real_run(name, label, bin_size, design, inputs, n_pcs) -> dict:
    path = DATA / f"{name}.nwb"
    sorting, trials = sip.read_nwb_units(path), sip.read_nwb_trials(path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # silent trials are counted in the result
        res = sip.cluster_trials(sorting, trials, inputs=inputs, bin_size=bin_size, n_pcs=n_pcs, max_components=8)
    info = sip.label_information(res.labels, trials[label].values, n_permutations=1000)
    return {
        "session": name, "label": label, "design": design, "n_pcs": n_pcs, "bin_size": bin_size,
        "trials": len(trials), "chosen_k": res.n_components, "init_of_chosen": res.model.init,
        "validation_bic": {str(k): v for k, v in res.bic.items()}, "tensor_skipped_for_k": sorted(res.skipped_tensor),
        "empty_trials": len(res.empty_trials), "seconds": time.perf_counter() - start, **info,
    }  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    table = {}
    for key in sorted({(r["setting"], r["noise"]) for r in runs}):
        rows = [r for r in runs if (r["setting"], r["noise"]) == key]
        entry = {"seeds": len(rows), "max_iter": sorted({r["tensor_em"].get("max_iter", EM["max_iter"]) for r in rows})}
        for method in METHODS:
            entry[method] = {"converged": int(sum(r[method]["converged"] for r in rows))}
            for metric in ("markov_error", "weight_error", "em_iterations", "test_accuracy", "seconds"):
                values = np.array([r[method][metric] for r in rows], dtype=float)
                entry[method][metric] = {
                    "median": float(np.median(values)),
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                }
        for metric in ("markov_error", "weight_error", "em_iterations"):
            a = [r["tensor_em"][metric] for r in rows]
            b = [r["random_em"][metric] for r in rows]
            diff = np.subtract(a, b)
            entry[f"wilcoxon_p_{metric}"] = float(wilcoxon(a, b).pvalue) if len(rows) > 1 and np.any(diff) else None
        table[f"{key[0]} noise {key[1]}"] = entry
    return table


def markdown(result: dict) -> str:
    lines = [f"# MoLDS benchmark\n\ncommit {result['commit']}, {result['date']}\n"]
    if result["synthetic_summary"]:
        lines += [
            "## Synthetic settings (median over seeds; mean ± sample std in parentheses)\n",
            "| setting | seeds | method | Markov error | weight error | EM iterations (cap) | converged | "
            "held-out accuracy | s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row, entry in result["synthetic_summary"].items():
            for method in METHODS:
                m = entry[method]

                def cell(metric, fmt="{:.3f}", m=m):
                    s = m[metric]
                    std = f" ± {fmt.format(s['std'])}" if s["std"] is not None else ""
                    return f"{fmt.format(s['median'])} ({fmt.format(s['mean'])}{std})"

                cap = METHODS[method].get("max_iter", "/".join(map(str, entry["max_iter"])))
                converged = f"{m['converged']}/{entry['seeds']}" if cap else "–"
                lines.append(
                    f"| {row} | {entry['seeds']} | {method} | {cell('markov_error')} | {cell('weight_error')} | "
                    f"{cell('em_iterations', '{:.0f}')} ({cap}) | "
                    f"{converged} | {cell('test_accuracy')} | {m['seconds']['median']:.1f} |"
                )
        lines.append("\nWilcoxon signed-rank p, Tensor-EM against random EM (paired by seed):\n")
        for row, entry in result["synthetic_summary"].items():
            ps = ", ".join(f"{k[11:]} {entry[k]:.3g}" if entry[k] is not None else f"{k[11:]} n/a"
                           for k in entry if k.startswith("wilcoxon_p_"))  # fmt: skip
            lines.append(f"- {row}: {ps}")
    if result["real"]:
        lines += [
            "\n## Real trials: clusters against the trial labels (never used to fit or choose)\n",
            "| session | label | inputs | PCs | trials | chosen K (init) | MI bits | shuffled MI | p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["real"]:
            lines.append(
                f"| {r['session']} | {r['label']} | {r['design']} | {r['n_pcs']} | {r['trials']} | "
                f"{r['chosen_k']} ({r['init_of_chosen']}) | {r['mutual_information_bits']:.3f} | "
                f"{r['shuffled_mean_bits']:.3f} | {r['p_value']:.3g} |"
            )
        lines.append(
            "\nValidation BIC per K for each row is in molds.json. With "
            f"{len(result['real'])} designs, a Bonferroni threshold at 0.05 is {0.05 / len(result['real']):.2g}."
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--settings", nargs="+", default=None, help="rows of SYNTHETIC to run, e.g. 'small:0.3'")
    parser.add_argument("--max-iter", type=int, default=EM["max_iter"], help="EM iteration cap, the same for both EMs")
    parser.add_argument("--out", default=str(RESULTS / "molds"))
    parser.add_argument("--merge", nargs="+", default=None, help="result files of separate runs to join")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        merged = {
            **parts[0],
            "merged_from": [{"file": Path(f).name, "commit": r["commit"]} for f, r in zip(args.merge, parts)],
        }
        merged["synthetic"] = [run for r in parts for run in r["synthetic"]]
        merged["real"] = [run for r in parts for run in r["real"]]
        merged["settings"]["synthetic"] = [row for r in parts for row in r["settings"]["synthetic"]]
        merged["settings"]["em"] = [r["settings"]["em"] for r in parts]
        merged["synthetic_summary"] = summarise(merged["synthetic"])
        out.with_suffix(".json").write_text(json.dumps(merged, indent=1))
        out.with_suffix(".md").write_text(markdown(merged))
        print(markdown(merged))
        return
    rows = [r for r in SYNTHETIC if args.settings is None or f"{r[0]}:{r[1]}" in args.settings]
    result = {
        "commit": git_commit(), "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
        "settings": {
            "synthetic": rows, "em": {**EM, "max_iter": args.max_iter}, "methods": METHODS, "seeds": args.seeds,
        },
        "synthetic": [], "synthetic_summary": {}, "real": [],
    }  # fmt: skip

    def save():
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        out.with_suffix(".md").write_text(markdown(result))

    if "synthetic" in args.parts:
        for setting, noise, n_train, n_test, length in rows:
            for seed in range(args.seeds):
                run = synthetic_run(setting, noise, n_train, n_test, length, seed, args.max_iter)
                result["synthetic"].append({"setting": setting, "noise": noise, "seed": seed, **run})
                result["synthetic_summary"] = summarise(result["synthetic"])
                save()
                print(setting, noise, seed, {m: {k: round(v, 3) for k, v in r.items()} for m, r in run.items()},
                      flush=True)  # fmt: skip
    if "real" in args.parts:
        for design in real_designs():
            result["real"].append(real_run(*design))
            save()
            r = result["real"][-1]
            print(r["session"], r["design"], r["n_pcs"], r["chosen_k"], round(r["mutual_information_bits"], 3),
                  r["p_value"], flush=True)  # fmt: skip
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()
