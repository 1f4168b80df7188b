"""Data-parallel scaling on this machine: training samples per second against the number
of torchrun processes (gloo on CPU), with the cores shared evenly between processes.

    .venv/bin/python benchmarks/scaling.py [--procs 1 2] [--preset small] [--epochs 2]

Each configuration pretrains the same model on the same simulated corpus with the same
global batch; throughput counts optimisation steps only (validation excluded), from the
first epoch on (the first epoch includes warm-up). It also prints the gradient volume each
process exchanges per step (4 bytes per trainable parameter; a ring all-reduce sends and
receives about 2 (n - 1) / n times that). Writes benchmarks/results/scaling.{json,md}.
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WORKER = """
import json, sys
import spikeinterface_poyo as sip
out, preset, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sessions = [(*sip.simulate_session(duration=300.0, num_units=100, seed=s), f"sim{s}") for s in range(4)]
model = sip.pretrain(sessions, preset=preset, max_epochs=epochs, max_time_s=None, batch_size=batch, progress_bar=False)
record = model.meta["training"]
record["trainable_parameters"] = sum(p.numel() for p in model.parameters())
record["shared_parameters"] = record["trainable_parameters"] - model.unit_emb.weight.numel()
if int(__import__("os").environ.get("RANK", "0")) == 0:
    open(out, "w").write(json.dumps(record))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, args, folder: Path) -> dict:
    out = folder / f"procs{procs}.json"
    threads = max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    worker = folder / "worker.py"
    worker.write_text(WORKER)
    launch = [sys.executable]
    if procs > 1:
        launch += ["-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={free_port()}"]
    subprocess.run(
        [*launch, str(worker), str(out), args.preset, str(args.epochs), str(args.batch_size)], env=env, check=True
    )
    record = json.loads(out.read_text())
    steps_per_epoch = record["steps"] // record["epochs"]
    timed = record["history"]["step_seconds"][1:] or record["history"]["step_seconds"]
    seconds_per_step = sum(timed) / (len(timed) * steps_per_epoch)
    gradient_bytes = 4 * record["trainable_parameters"]
    return {
        "processes": procs,
        "threads_per_process": threads,
        "global_batch": args.batch_size,
        "seconds_per_step": seconds_per_step,
        "samples_per_s": args.batch_size / seconds_per_step,
        "final_train_loss": record["history"]["train_loss"][-1],
        "trainable_parameters": record["trainable_parameters"],
        "gradient_mb_per_step": gradient_bytes / 1e6,
        "allreduce_mb_per_process_per_step": 2 * (procs - 1) / procs * gradient_bytes / 1e6,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args, Path(tmp)) for n in args.procs]
    base = rows[0]["samples_per_s"]
    lines = [
        f"Data-parallel scaling, `{args.preset}` preset, global batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores, gloo",
        "",
        "| processes | threads each | s/step | samples/s | speed-up | all-reduce MB/process/step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['threads_per_process']} | {r['seconds_per_step']:.3f} | "
            f"{r['samples_per_s']:.1f} | {r['samples_per_s'] / base:.2f}x | "
            f"{r['allreduce_mb_per_process_per_step']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": "scaling",
        "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "preset": args.preset,
        "rows": rows,
    }
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "scaling.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
