"""Reproduce the pretrained model shipped with the package.

Pretrains one POYO model on a heterogeneous corpus of simulated sessions
(:func:`spikeinterface_poyo.simulation.simulate_corpus`) plus the two MIT-licensed rat
hippocampus sessions of ``../shared/data`` (``linear_track.nwb`` and ``w_maze.nwb``: 2-D
position during the epochs tagged ``run``), and saves it where
``sip.load_model(name)`` and ``sip.available_models()`` find it, with a JSON record of the
recipe beside the weights. The macaque M1 session is never used: its licence does not
allow shipping weights trained on it, and it is the held-out test of benchmarks/transfer.py.

    .venv/bin/python scripts/train_pretrained_model.py [--num-sessions 12] [--max-time-s 1300]
    .venv/bin/python scripts/train_pretrained_model.py --num-sessions 2 --max-time-s 30 --output /tmp/smoke

The self-supervised model (issue 15) adds the masked objective (``--objective both``) and the
unlabelled MIT-licensed IBL Neuropixels recording (``--unlabelled``), whose spikes serve the
masked objective only:

    .venv/bin/python scripts/train_pretrained_model.py --name poyo_small_ssl --objective both --unlabelled

Every session decodes a 2-D behaviour (velocity or position), each standardised on its own.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import spikeinterface_poyo as sip
from spikeinterface_poyo.io.models import PRETRAINED_DIR, model_sha256
from spikeinterface_poyo.io.nwb_read import read_nwb_epochs
from spikeinterface_poyo.simulation import simulate_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _provenance import git_commit  # noqa: E402  (shared with the benchmarks)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: (session id, file, behaviour series) of the real sessions; position during running only
HIPPOCAMPUS = [("linear_track", "linear_track.nwb", "position"), ("w_maze", "w_maze.nwb", "position")]
#: (session id, file) of real recordings without behaviour that may ship (masked objective only)
UNLABELLED = [("ibl_neuropixels", "ibl_neuropixels_120s.nwb")]
RECIPE_FILE = "recipe.json"


def unlabelled_sessions(data_dir: Path) -> tuple[list[tuple], list[dict]]:
    """(sorting, None, session id) of the unlabelled recordings, and a description of each."""
    import spikeinterface.extractors as se

    sessions, described = [], []
    for session_id, file in UNLABELLED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sorting = se.read_nwb_sorting(str(data_dir / file))
        sessions.append((sorting, None, session_id))
        units = int(sorting.get_num_units())
        described.append({"session_id": session_id, "file": file, "behaviour": None, "num_units": units,
                          "licence": "MIT (int-brain-lab/ibllib)"})  # fmt: skip
    return sessions, described


def hippocampus_sessions(data_dir: Path) -> tuple[list[tuple], list[dict]]:
    """(sorting, behaviour, session id) of the hippocampus sessions, and a description of each."""
    import spikeinterface.extractors as se

    sessions, described = [], []
    for session_id, file, series in HIPPOCAMPUS:
        path = data_dir / file
        with warnings.catch_warnings():  # pynwb/hdmf namespace chatter
            warnings.simplefilter("ignore")
            sorting = se.read_nwb_sorting(str(path))
            behavior = sip.read_nwb_behavior(path, series).restrict(read_nwb_epochs(path, "run"))
        sessions.append((sorting, behavior, session_id))
        rate = 1.0 / float(np.median(np.diff(behavior.timestamps)))
        described.append(
            {
                "session_id": session_id,
                "file": file,
                "series": series,
                "epochs": "run",
                "num_units": int(sorting.get_num_units()),
                "seconds": float(behavior.valid.sum() / rate),
                "licence": "MIT (nelpy/example-data)",
            }
        )
    return sessions, described


def simulated_sessions(num_sessions: int, seed: int, duration: tuple[float, float]) -> tuple[list, list[dict]]:
    """(sorting, behaviour, session id) of the simulated corpus, and the parameters of each session."""
    corpus = simulate_corpus(num_sessions, seed=seed, duration=duration)
    sessions = [(s["sorting"], s["behavior"], s["session_id"]) for s in corpus]
    described = [{"session_id": s["session_id"], **s["params"]} for s in corpus]
    return sessions, described


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="poyo_small_sim_hc", help="name of the shipped model")
    parser.add_argument("--output", type=Path, help="folder to save to (default: the package's pretrained/<name>)")
    parser.add_argument("--num-sessions", type=int, default=12, help="simulated sessions in the corpus")
    parser.add_argument("--corpus-seed", type=int, default=0, help="seed of the simulated corpus")
    parser.add_argument("--duration", type=float, nargs=2, default=[300.0, 600.0], help="range of session lengths")
    parser.add_argument("--no-hippocampus", action="store_true", help="simulated sessions only")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches")
    parser.add_argument("--max-time-s", type=float, default=1300.0, help="wall-clock training budget")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--objective", default="behavior", choices=["behavior", "masked", "both"])
    parser.add_argument("--unlabelled", action="store_true", help="add the unlabelled IBL recording (masked only)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output = args.output or PRETRAINED_DIR / args.name
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = git_commit()  # the code that trains, not whatever is checked out when it ends
    t0 = time.perf_counter()
    sessions, simulated = simulated_sessions(args.num_sessions, args.corpus_seed, tuple(args.duration))
    real = []
    if not args.no_hippocampus:
        hc_sessions, real = hippocampus_sessions(args.data_dir)
        sessions += hc_sessions
    if args.unlabelled:
        if args.objective == "behavior":
            raise SystemExit("--unlabelled needs --objective masked or both: its recordings have no behaviour.")
        ibl_sessions, described = unlabelled_sessions(args.data_dir)
        sessions += ibl_sessions
        real += described
    data_time = time.perf_counter() - t0
    print(
        f"{len(sessions)} sessions ready in {data_time:.0f} s; pretraining for up to {args.max_time_s:g} s", flush=True
    )

    hyperparameters = dict(
        preset=args.preset,
        seed=args.seed,
        max_time_s=args.max_time_s,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        objective=args.objective,
    )
    t1 = time.perf_counter()
    model = sip.pretrain(sessions, progress_bar=False, device="cpu", **hyperparameters)
    train_time = time.perf_counter() - t1
    model.meta["training"]["name"] = args.name
    sip.save_model(model, output)
    training = model.meta["training"]
    recipe = {
        "name": args.name,
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "started": started.isoformat(timespec="seconds"),
        "commit": commit,
        "package_version": sip.__version__,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "hyperparameters": hyperparameters,
        "corpus": {
            "simulated": {"num_sessions": args.num_sessions, "seed": args.corpus_seed, "duration": args.duration},
            "sessions": simulated + real,
            "never_used": "m1_center_out.nwb (licence; held out for benchmarks/transfer.py)",
        },
        "result": {
            "data_preparation_s": round(data_time, 1),
            "train_time_s": round(train_time, 1),
            **{
                k: training[k]
                for k in ("epochs", "best_epoch", "best_val_r2", "best_val_neg_masked_nll", "steps", "stopped_by")
                if k in training
            },  # fmt: skip
            "num_units": training.get("num_units"),
            "train_seconds": training.get("train_seconds"),
        },
        "weights_sha256": model_sha256(output),
        "size_bytes": folder_bytes(output),
    }
    (output / RECIPE_FILE).write_text(json.dumps(recipe, indent=2))
    print(json.dumps(recipe["result"], indent=2))
    print(f"saved {output} ({recipe['size_bytes'] / 1e6:.2f} MB)")


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main()
