"""BrainBits bottleneck curves (issue 17): how many dimensions of the recording each decoder reads.

For every dataset and decoder (the Wiener filter's linear form, the MLP, the GRU; POYO on request) a linear bottleneck
``z_t = W x_t + b`` of width k is trained jointly with the decoder on the first 70 % of the samples
(its last 10 % for early stopping) and scored by R² (mean over the behaviour's dimensions) on the last
30 %, for k = 1, 2, 4, ... N and every seed; next to it, the random baselines (uniform noise in place
of the inputs; spikes circularly shifted by at least 10 s against the behaviour), the ceilings (no
bottleneck, the same budget; the identity bottleneck k = N, W = I) and the behaviour-only
autoregressive reference (never used to normalise). See ``docs/bottleneck.md``.

Datasets: M1 hand velocity (``m1_center_out.nwb``), hippocampus position on the linear track
(``linear_track.nwb``) and in the W maze (``w_maze.nwb``; both epochs tagged 'run'), and two
simulations of known dimensionality: every unit cosine-tuned to a 2-D velocity (``simulated_2d``:
two population directions), the same with a slow population gain (``simulated_2d_gain``: two
directions and the gain), and with two slow internal-state latents unrelated to the behaviour on
top, which carry more variance than it (``simulated_2d_gain_state``). ``--pca mlp ...`` adds these
decoders' curves through an unsupervised PCA bottleneck (W fixed to the first k principal axes of
the training inputs).

Reported per row: k_50, k_90 and k_95 (the smallest k reaching 50 % / 90 % / 95 % of the way from the noise
baseline to the unbottlenecked ceiling, interpolated in log k) with 95 % bootstrap intervals over
contiguous test blocks and seeds, p(1), p(2), p(3) (simulations: k = 3 is on their curves), the
baselines, the ceilings and the reference.

    .venv/bin/python benchmarks/bottleneck.py [--datasets m1_velocity ...] [--decoders wiener ... poyo] [--seeds 0 1 2]
    .venv/bin/python benchmarks/bottleneck.py --datasets simulated_2d --decoders wiener --ks 1 2 --seeds 0 \\
        --max-epochs 5 --out /tmp/smoke   # a smoke run

POYO (``--decoders poyo``, not in the default set: it is far slower on a CPU) is
``sip.BinnedPOYO``: a fresh POYO of ``--poyo-preset`` reading the k channels of each 50 ms bin
as value tokens (``--poyo-placement latent`` squeezes its latent tokens instead: another
quantity, see docs/bottleneck.md).

Writes ``bottleneck.json`` (every number, the commit and the settings), ``bottleneck.md`` and one PNG of
curves per dataset (``bottleneck_<dataset>.png``, after the stem) into ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine
from decoding import REAL_DATASETS
from decoding import load_dataset as load_real_dataset

import spikeinterface_poyo as sip
from spikeinterface_poyo.analysis.bottleneck import BinnedPOYO
from spikeinterface_poyo.analysis.bottleneck.sweep import default_ks
from spikeinterface_poyo.models.baselines import GRUDecoder, MLPDecoder, WienerFilter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
#: simulations of known dimensionality: name -> simulate_session arguments
SIMULATED = {
    "simulated_2d": dict(duration=600.0, num_units=60, seed=0, lag=0.0),
    "simulated_2d_gain": dict(duration=600.0, num_units=120, seed=0, lag=0.0, firing_rates=(5.0, 30.0), gain_noise=1.0),
    "simulated_2d_gain_state": dict(
        duration=600.0,
        num_units=120,
        seed=0,
        lag=0.0,
        firing_rates=(5.0, 30.0),
        gain_noise=1.0,
        state_dims=2,
        state_noise=0.7,
    ),
}
DATASETS = ["m1_velocity", "linear_track_position", "w_maze_position", *SIMULATED]
#: the decoders, as in benchmarks/decoding.py (causal, 50 ms bins), and POYO on the same bins
DECODERS = {"wiener": WienerFilter, "mlp": MLPDecoder, "gru": GRUDecoder, "poyo": BinnedPOYO}
#: the decoders run when --decoders is not given
DEFAULT_DECODERS = ["wiener", "mlp", "gru"]


def load(name: str, data_dir: Path):
    """(sorting, behaviour, description) of one dataset."""
    if name in SIMULATED:
        sorting, behavior = sip.simulate_session(**SIMULATED[name])
        return sorting, behavior, {"simulated": SIMULATED[name]}
    return load_real_dataset(name, data_dir)


def run(name: str, decoder: str, args, pca: bool = False) -> tuple[dict, sip.BottleneckCurve]:
    sorting, behavior, description = load(name, args.data_dir)
    training = {"max_epochs": args.max_epochs} if args.max_epochs else {}
    if args.max_time_s:
        training["max_time_s"] = args.max_time_s
    ks = args.ks
    if ks is None and name in SIMULATED:  # k = 3 resolves a third direction (the gain)
        ks = sorted({3, *default_ks(sorting.get_num_units())})
    start = time.perf_counter()
    template = BinnedPOYO(preset=args.poyo_preset) if decoder == "poyo" else DECODERS[decoder]()
    bottleneck = "pca" if pca else args.poyo_placement if decoder == "poyo" else "learned"
    curve = sip.bottleneck_curve(sorting, behavior, template, ks=ks, seeds=args.seeds, bottleneck=bottleneck,
                                 training=training or None, n_blocks=args.n_blocks)  # fmt: skip
    seconds = time.perf_counter() - start
    summary = curve.summary(n_boot=args.n_boot)
    record = {
        "dataset": description,
        "num_units": len(curve.unit_ids),
        "ks": curve.ks.tolist(),
        "r2_per_seed": curve.scores.tolist(),
        "baselines_per_seed": {k: v.tolist() for k, v in curve.baselines.items()},
        "ceilings_per_seed": {k: v.tolist() for k, v in curve.ceilings.items()},
        "p": curve.p().tolist(),
        "summary": summary,
        "settings": curve.settings,
        "seconds": round(seconds, 1),
    }
    return record, curve


def _k(entry: dict) -> str:
    k, low, high = entry["k"], entry["low"], entry["high"]
    if not np.isfinite(k):
        return "not reached"
    return f"{k:.2g} [{low:.2g}, {high:.2g}]" if np.isfinite(low) else f"{k:.2g}"


def markdown(result: dict) -> str:
    lines = [
        "Held-out R² through a jointly trained linear bottleneck of width k (train on the first 70 %, test on the "
        "last 30 %). k_q: smallest k reaching q of the way from the noise baseline to the unbottlenecked ceiling, "
        "interpolated in log k, [95 % bootstrap interval over contiguous test blocks and seeds]. AR: behaviour-only "
        f"autoregressive reference. Seeds {result['settings']['seeds']}; commit {result['commit']}; "
        f"{result['machine']['processor']}, {result['machine']['device']}.",
        "",
        "| dataset | decoder | N | k_50 | k_90 | k_95 | p(1) | p(2) | p(3) | noise | shifted | ceiling (none) | "
        "identity | AR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, decoders in result["datasets"].items():
        for decoder, record in decoders.items():
            s = record["summary"]
            cells = [
                name, decoder, str(record["num_units"]),
                *(_k(s[q]) if q in s else "-" for q in ("k_50", "k_90", "k_95")),
                *(f"{s[key]:.2f}" if key in s else "-" for key in ("p(1)", "p(2)", "p(3)")),
                *(f"{s['baselines'].get(b, np.nan):.3f}" for b in ("noise", "shifted")),
                *(f"{s['ceilings'].get(c, np.nan):.3f}" for c in ("none", "identity")),
                f"{s['reference']:.3f}",
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_dataset(name: str, curves: dict, out: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4), squeeze=False)
    for ax, (decoder, curve) in zip(axes[0], curves.items()):
        sip.plot_bottleneck_curve(curve, ax=ax)
        ax.set_title(f"{name}: {decoder}", fontsize=9, loc="right")
    figure.tight_layout()
    figure.savefig(out / f"{stem}_{name}.png", dpi=120)
    plt.close(figure)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--decoders", nargs="+", default=DEFAULT_DECODERS, choices=list(DECODERS))
    parser.add_argument("--poyo-preset", default="small", help="architecture of POYO's fresh backbone")
    parser.add_argument(
        "--poyo-placement",
        default="learned",
        choices=["learned", "latent"],
        help="POYO's bottleneck: W on the inputs as value tokens, or the squeeze of its latents",
    )
    parser.add_argument("--pca", nargs="*", default=[], choices=list(DECODERS),
                        help="decoders also run through a PCA bottleneck (none by default)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="bottleneck widths (default 1, 2, 4, ... N)")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap every run's epochs (default: the decoder's)")
    parser.add_argument("--max-time-s", type=float, default=None, help="training budget of every run, in seconds")
    parser.add_argument("--n-blocks", type=int, default=10, help="contiguous test blocks of the bootstrap")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--stem", default="bottleneck", help="name of the result files")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]  # paths relative to the repository, not this machine
    settings = {k: (os.path.relpath(v.resolve(), root) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "commit": git_commit(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            **settings,
            "simulated": SIMULATED,
            "real": {k: REAL_DATASETS[k] for k in DATASETS if k in REAL_DATASETS},
        },
        "datasets": {},
    }
    for name in args.datasets:
        curves = {}
        for decoder, pca in [(d, pca) for d in args.decoders for pca in [False, True][: 1 + (d in args.pca)]]:
            # the latent squeeze's k is another quantity: its rows say so
            label = "poyo (latent squeeze)" if decoder == "poyo" and args.poyo_placement == "latent" else decoder
            label += " (PCA)" if pca else ""
            record, curves[label] = run(name, decoder, args, pca)
            result["datasets"].setdefault(name, {})[label] = record
            s = record["summary"]
            print(f"{name:24s} {label:12s} k_50 {_k(s['k_50']):22s} k_90 {_k(s['k_90']):22s} "
                  f"noise {s['baselines']['noise']:.3f} ceiling {s['ceilings']['none']:.3f} ({record['seconds']} s)",
                  flush=True)  # fmt: skip
            (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=1))  # after every run
        plot_dataset(name, curves, args.out, args.stem)
    (args.out / f"{args.stem}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
