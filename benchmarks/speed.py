"""Speed and memory benchmark: tokenisation, training steps, inference, and torch_brain.

    .venv/bin/python benchmarks/speed.py [--repeats 10] [--torch-brain-python .tbvenv/bin/python]

Measures, on the CPU (and on CUDA too when it is there):

- tokenisation throughput: ``sorting_to_tokens`` plus ``collate_spike_windows`` over all
  1 s windows of a 300-unit, 1-hour sorting firing at 10 Hz per unit (10.8 M spikes);
- training step time (forward, masked MSE, backward, clipping, AdamW) and its peak
  memory at batch 32, for the ``small`` and ``poyo_1.3M`` presets;
- inference latency of one 1 s window at batch 1, and the time to decode the whole hour
  (``predict_tokens`` at 50 Hz, windows overlapping by half), one forward pass at a time on
  torch's threads (``n_jobs=1``) and one single-threaded pass per core (``n_jobs=-1``);
- the same model configuration in torch_brain 0.2.1, on the same batch and with the
  same initial weights, reported as ratios ours / theirs;
- streaming (issue 16): the per-step latency of ``sip.StreamingDecoder`` with a causal model,
  fed the sorting one hop at a time (the spikes of ``(t - hop, t]``, then the prediction at
  ``t``), over ``--stream-duration`` seconds (an hour by default) at hops of 20 and 50 ms:
  median, 99th percentile and maximum of the time each ``push`` takes, and FALCON's
  ``normalized_latency`` (compute time over neural time). The steps of the first window, which
  only wait for context, are left out of the percentiles. Beside them, the work of one step
  (GFLOP) and this machine's matrix-product rate, whose ratio is a floor no code reaches.

Step times, latencies and peak memory are measured by ``_speed_worker.py``, one fresh
process per measurement (see its docstring for how peak memory is taken); torch_brain's
side runs in its own interpreter (``--torch-brain-python``) and is reported as missing
when that interpreter cannot import it. Medians over ``--repeats`` after 2 warm-up
repeats. Writes benchmarks/results/speed.json and benchmarks/results/speed.md; with
``--parts``, only those sections are measured and the others are kept from the file.

    .venv/bin/python benchmarks/speed.py --parts streaming --stream-duration 3600
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _provenance import git_commit, machine
from safetensors.torch import load_file, save_file

from spikeinterface_poyo.core.spikes import sorting_to_tokens
from spikeinterface_poyo.models.poyo import POYO
from spikeinterface_poyo.models.poyo.predict import predict_tokens
from spikeinterface_poyo.models.poyo.tokenizer import collate_spike_windows

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORKER = HERE / "_speed_worker.py"
# torch_brain lives in its own environment beside the repository's (benchmarks/README.md sets it up)
TORCH_BRAIN_PYTHON = os.environ.get("TORCH_BRAIN_PYTHON", str(HERE.parent / ".tbvenv" / "bin" / "python"))
PRESETS = ["small", "poyo_1.3M"]
WINDOW = 1.0
QUERIES_PER_WINDOW = 100  # behaviour at 100 Hz
DECODE_RATE = 50.0
PARTS = ["tokenisation", "models", "decode", "streaming"]
STREAM_HOPS = [0.02, 0.05]


def make_sorting(num_units: int = 300, duration: float = 3600.0, rate: float = 10.0, seed: int = 0):
    """A Poisson sorting built directly as a NumpySorting (no waveform simulation)."""
    from spikeinterface.core import NumpySorting

    fs = 30000.0
    rng = np.random.default_rng(seed)
    n = rng.poisson(num_units * duration * rate)
    samples = np.sort(rng.integers(0, int(duration * fs), n))
    labels = rng.integers(0, num_units, n)
    return NumpySorting.from_samples_and_labels([samples], [labels], fs, unit_ids=np.arange(num_units))


def bench_tokenisation(sorting, repeats: int, batch_size: int = 32) -> dict:
    """Time ``sorting_to_tokens`` and the collation of every 1 s window, medians over repeats."""
    to_tokens, collate = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = sorting_to_tokens(sorting)[0]
        t1 = time.perf_counter()
        starts = np.arange(tokens.start_time, tokens.end_time - WINDOW + 1e-9, WINDOW)
        vocab_index = np.arange(1, tokens.num_units + 1)
        for b in range(0, len(starts), batch_size):
            collate_spike_windows(tokens, starts[b : b + batch_size], WINDOW, vocab_index)
        t2 = time.perf_counter()
        to_tokens.append(t1 - t0)
        collate.append(t2 - t1)
    total = statistics.median(np.add(to_tokens, collate))
    return {
        "num_units": tokens.num_units,
        "duration_s": tokens.end_time - tokens.start_time,
        "num_spikes": tokens.num_spikes,
        "num_windows": len(starts),
        "collate_batch_size": batch_size,
        "sorting_to_tokens_s": statistics.median(to_tokens),
        "collate_s": statistics.median(collate),
        "total_s": total,
        "spikes_per_s": tokens.num_spikes / total,
        "repeats": repeats,
    }


def reference_model(preset: str, tokens) -> POYO:
    """Our POYO for ``preset`` with the sorting's units and one session, seeded."""
    torch.manual_seed(0)
    model = POYO.from_preset(preset, dim_out=2)
    model.unit_emb.extend_vocab(tokens.unit_ids)
    model.session_emb.extend_vocab([tokens.session_id])
    return model


def model_batch(model: POYO, tokens, starts: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Model inputs for windows starting at ``starts``, plus random targets at 100 Hz queries."""
    batch = collate_spike_windows(tokens, starts, WINDOW, np.arange(1, tokens.num_units + 1))
    n = len(starts)
    latent_index, latent_timestamps = model.latent_tokens(n)
    queries = (np.arange(QUERIES_PER_WINDOW) + 0.5) / QUERIES_PER_WINDOW * WINDOW
    batch.update(
        latent_index=latent_index.contiguous(),
        latent_timestamps=latent_timestamps.contiguous(),
        session_index=torch.ones(n, dtype=torch.long),
        output_timestamps=torch.from_numpy(np.tile(queries, (n, 1)).astype(np.float32)),
        target=torch.from_numpy(rng.normal(size=(n, QUERIES_PER_WINDOW, 2)).astype(np.float32)),
        target_mask=torch.ones(n, QUERIES_PER_WINDOW, dtype=torch.bool),
    )
    return batch


def write_work_dir(work: Path, preset: str, tokens, batch_size: int) -> dict:
    """Files the workers read: architecture and vocabularies, initial weights, batches."""
    model = reference_model(preset, tokens)
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(tokens.start_time, tokens.end_time - WINDOW, batch_size))
    batch = model_batch(model, tokens, starts, rng)
    single = model_batch(model, tokens, starts[:1], rng)
    batch.update({f"single_{k}": v for k, v in single.items() if k not in ("target", "target_mask")})
    config = {"architecture": model.config, "unit_vocab": tokens.unit_ids, "session_vocab": [tokens.session_id]}
    (work / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, work / "weights.safetensors")
    save_file({k: v.contiguous() for k, v in batch.items()}, work / "batch.safetensors")
    return {
        "parameters": model.num_parameters(),
        "batch_size": batch_size,
        "tokens_per_window": int(batch["input_mask"].sum() / batch_size),
        "padded_tokens": int(batch["input_mask"].shape[1]),
        "latents_per_window": int(batch["latent_index"].shape[1]),
        "queries_per_window": QUERIES_PER_WINDOW,
    }


def run_worker(python: str, impl: str, mode: str, work: Path, device: str, threads: int, repeats: int) -> dict:
    """One measurement in a fresh process; an error is returned as ``{"error": ...}``."""
    cmd = [python, str(WORKER), "--impl", impl, "--mode", mode, "--work", str(work), "--device", device]
    cmd += ["--threads", str(threads), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_brain_status(python: str) -> dict:
    """Whether ``python`` can import torch_brain, and its version."""
    if not Path(python).exists():
        return {"available": False, "reason": f"no interpreter at {_shown(python)}"}
    code = "import torch, torch_brain; print(torch_brain.__version__, torch.__version__)"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"available": False, "reason": proc.stderr.strip().splitlines()[-1]}
    version, torch_version = proc.stdout.split()
    return {"available": True, "python": _shown(python), "version": version, "torch": torch_version}


def _shown(python: str) -> str:
    """The interpreter's path relative to the repository when inside it (results carry no machine paths)."""
    try:
        return str(Path(python).resolve().relative_to(HERE.parent.resolve()))
    except ValueError:
        return Path(python).name


def max_output_difference(work: Path) -> float | None:
    """Largest absolute difference of the eval-mode outputs of both implementations."""
    try:
        ours = load_file(work / "output_ours.safetensors")["output"]
        theirs = load_file(work / "output_torch_brain.safetensors")["output"]
    except FileNotFoundError:
        return None
    return float((ours - theirs).abs().max())


def ratio(ours: dict, theirs: dict | None, key: str) -> float | None:
    if not theirs or "error" in theirs or "error" in ours or not theirs.get(key):
        return None
    return ours[key] / theirs[key]


def bench_model(preset: str, tokens, device: str, args, torch_brain: dict) -> dict:
    """Training step and one-window inference, ours and torch_brain's, for one preset."""
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix=f"speed_{preset}_") as tmp:
        work = Path(tmp)
        entry = {"preset": preset, "device": device, **write_work_dir(work, preset, tokens, args.batch_size)}
        for mode in ("train", "infer"):
            ours = run_worker(sys.executable, "ours", mode, work, device, threads, args.repeats)
            theirs = None
            if torch_brain["available"]:
                theirs = run_worker(args.torch_brain_python, "torch_brain", mode, work, device, threads, args.repeats)
            entry[mode] = {
                "ours": ours,
                "torch_brain": theirs,
                "time_ratio": ratio(ours, theirs, "median_s"),
                "peak_memory_ratio": ratio(ours, theirs, "peak_mib"),
            }
            print(f"  {preset} {mode} on {device}: {summary(entry[mode])}", flush=True)
        entry["max_abs_output_difference"] = max_output_difference(work)
    return entry


def describe(res: dict | None) -> str:
    if res is None:
        return "missing"
    return res["error"] if "error" in res else f"{res['median_s'] * 1e3:.1f} ms, peak {res['peak_mib']:.0f} MiB"


def summary(result: dict) -> str:
    return f"ours {describe(result['ours'])}; torch_brain {describe(result['torch_brain'])}"


def bench_decode_hour(preset: str, tokens, device: str, n_jobs: int) -> dict:
    """Time to decode the whole hour at 50 Hz with an (untrained) model of ``preset``.

    ``n_jobs=1``: one forward pass at a time on torch's threads; ``n_jobs=-1``: one
    single-threaded pass per core at a time (``predict_tokens``' default batch of windows).
    """
    model = reference_model(preset, tokens).to(device).eval()
    timestamps = np.arange(tokens.start_time, tokens.end_time, 1.0 / DECODE_RATE)
    # warm-up on a few seconds so one-off start-up costs are not counted
    predict_tokens(model, tokens, timestamps[: int(5 * DECODE_RATE)], n_jobs=n_jobs)
    t0 = time.perf_counter()
    predict_tokens(model, tokens, timestamps, n_jobs=n_jobs)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {
        "preset": preset,
        "device": device,
        "n_jobs": n_jobs,
        "batch_size": inspect.signature(predict_tokens).parameters["batch_size"].default,
        "torch_threads": torch.get_num_threads(),
        "timestamps": len(timestamps),
        "rate_hz": DECODE_RATE,
        "seconds": elapsed,
        "realtime_factor": (tokens.end_time - tokens.start_time) / elapsed,
    }


def step_gflop(stream, tokens) -> float:
    """GFLOP of one streaming step (a full window's prediction), counted by torch's
    ``FlopCounterMode``: matrix products as it counts them, attention as 4 B H Nq Nk Dh (the
    CPU flash kernel, which it does not count)."""
    from torch.utils.flop_counter import FlopCounterMode

    def attention(q, k, v, *args, **kwargs):
        return 4 * q[0] * q[1] * q[2] * k[2] * q[3]

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention}
    t = tokens.start_time + 2 * stream.window
    lo, hi = np.searchsorted(tokens.times, [t - stream.window, t])
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        stream._step(tokens.times[lo:hi], tokens.unit_index[lo:hi], t)
    return counter.get_total_flops() / 1e9


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This machine's float32 matrix-product rate on torch's threads (best of ``repeats``
    products of two ``size`` x ``size`` matrices): what a step's GFLOP are divided by for the
    time no code could go below."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = np.inf
    for _ in range(repeats + 3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def bench_streaming(preset: str, tokens, hop: float, device: str, duration: float) -> dict:
    """Replay ``duration`` seconds of ``tokens`` into a :class:`StreamingDecoder` of an (untrained)
    causal model of ``preset``, one hop per push, and time every push."""
    from spikeinterface_poyo.models.poyo.streaming import StreamingDecoder

    model = reference_model(preset, tokens)
    model.config["context"] = "causal"  # the architecture is the same; only the window placement differs
    model = model.to(device).eval()
    start = tokens.start_time
    stream = StreamingDecoder(model, hop=hop, start_time=start)
    ids = np.asarray(stream.unit_ids)[tokens.unit_index]  # the replayed sorting's units are the model's
    edges = start + hop * np.arange(1, int(round(min(duration, tokens.end_time - start) / hop)) + 1)
    bounds = np.searchsorted(tokens.times, edges, side="left")
    waiting = int(np.ceil(stream.window / hop - 1e-9)) - 1  # steps before the first full window: no forward pass
    latencies, lo = np.empty(len(edges)), 0
    for i, (end, hi) in enumerate(zip(edges, bounds)):
        t0 = time.perf_counter()
        out = stream.push(tokens.times[lo:hi], ids[lo:hi], end_time=end)
        latencies[i] = time.perf_counter() - t0  # predictions come back as numpy: the device has finished
        lo = hi
        assert len(out.times) == 1, "one prediction per hop"
    steps = latencies[waiting:]
    return {
        "preset": preset,
        "device": device,
        "hop_s": hop,
        "window_s": stream.window,
        "neural_time_s": stream.neural_time_s,
        "torch_threads": torch.get_num_threads(),
        "steps": len(steps),
        "median_ms": float(np.median(steps) * 1e3),
        "p99_ms": float(np.percentile(steps, 99) * 1e3),
        "max_ms": float(steps.max() * 1e3),
        "mean_spikes_per_window": float(len(tokens.times) / (tokens.end_time - start) * stream.window),
        "normalized_latency": stream.normalized_latency,
        "buffered_spikes_at_end": stream.buffered_spikes,
        "gflop_per_step": step_gflop(stream, tokens) if device == "cpu" else None,
    }


def fmt(x, spec: str, scale: float = 1.0) -> str:
    return "-" if x is None else format(x * scale, spec)


def cell(res: dict | None, key: str, scale: float, spec: str, unit: str) -> str:
    """A table cell for one worker result: the value, 'error', or '-' when not run."""
    if res is None:
        return "-"
    return "error" if "error" in res else fmt(res[key], spec, scale) + unit


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']['processor']}, {result['machine']['cpu_threads']} torch threads; "
        f"torch {result['machine']['torch']}; torch_brain: "
        + (result["torch_brain"].get("version") or f"missing ({result['torch_brain'].get('reason')})"),
    ]
    tok = result.get("tokenisation")
    if tok:
        lines += [
            "",
            f"Tokenisation ({tok['num_units']} units, {tok['duration_s'] / 3600:.2g} h, 10 Hz per unit):",
            "",
            "| spikes | windows | sorting_to_tokens | collate all windows | throughput |",
            "|---|---|---|---|---|",
            f"| {tok['num_spikes'] / 1e6:.1f} M | {tok['num_windows']} | {tok['sorting_to_tokens_s']:.2f} s "
            f"| {tok['collate_s']:.2f} s | {tok['spikes_per_s'] / 1e6:.1f} M spikes/s |",
        ]
    if result.get("models"):
        lines += [
            "",
            f"Training step at batch {result['settings']['batch_size']} and one-window inference at batch 1 "
            "(medians; peak = extra resident memory over the steps); ours / torch_brain 0.2.1 on the same batch:",
            "",
            "| preset | device | params | step ours | step torch_brain | step ratio | peak ours | peak torch_brain "
            "| peak ratio | 1-window latency ours | latency torch_brain | max output diff |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for m in result.get("models", []):
        train, infer = m["train"], m["infer"]
        cells = [m["preset"], m["device"], f"{m['parameters'] / 1e6:.2f} M"]
        cells += [
            cell(train["ours"], "median_s", 1e3, ".0f", " ms"),
            cell(train["torch_brain"], "median_s", 1e3, ".0f", " ms"),
        ]
        cells += [fmt(train["time_ratio"], ".2f")]
        cells += [
            cell(train["ours"], "peak_mib", 1, ".0f", " MiB"),
            cell(train["torch_brain"], "peak_mib", 1, ".0f", " MiB"),
        ]
        cells += [fmt(train["peak_memory_ratio"], ".2f")]
        cells += [
            cell(infer["ours"], "median_s", 1e3, ".1f", " ms"),
            cell(infer["torch_brain"], "median_s", 1e3, ".1f", " ms"),
        ]
        cells += [fmt(m["max_abs_output_difference"], ".1e")]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("decode_hour"):
        first = result["decode_hour"][0]
        hours = first["timestamps"] / first["rate_hz"] / 3600
        lines += ["", f"Decoding the whole {hours:.2g} h (50 Hz, 1 s windows overlapping by half):", ""]
        lines += [
            "| preset | device | forward passes at a time | time | faster than real time |",
            "|---|---|---|---|---|",
        ]
    for d in result.get("decode_hour", []):
        passes = (
            f"1 ({d['torch_threads']} torch threads)"
            if d["n_jobs"] == 1
            else f"n_jobs={d['n_jobs']}: one per core, single-threaded"
        )
        lines.append(
            f"| {d['preset']} | {d['device']} | {passes}, batch {d['batch_size']} | {d['seconds']:.1f} s "
            f"| {d['realtime_factor']:.0f}× |"
        )
    if result.get("streaming"):
        first = result["streaming"][0]
        lines += [
            "",
            f"Streaming (`sip.StreamingDecoder`, causal, one push per hop over {first['neural_time_s'] / 60:.0f} min "
            f"of the sorting, {first['mean_spikes_per_window']:.0f} spikes per {first['window_s']:g} s window; "
            "latency of each push, first window left out):",
            "",
            "| preset | device | torch threads | hop | steps | median | p99 | max | normalized_latency "
            "| GFLOP per step | floor at the matmul rate |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    rate = result.get("settings", {}).get("streaming", {}).get("matmul_gflops")
    for r in result.get("streaming", []):
        work = r.get("gflop_per_step")
        floor = "-" if work is None or rate is None else f"{work / rate * 1e3:.1f} ms"
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['torch_threads']} | {r['hop_s'] * 1e3:.0f} ms | {r['steps']} | "
            f"{r['median_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.1f} ms | {r['normalized_latency']:.3f} "
            f"| {fmt(work, '.3f')} | {floor} |"
        )
    if rate is not None and result.get("streaming"):
        lines += ["", f"Matrix-product rate of this machine (float32, 1024², {first['torch_threads']} threads): "
                  f"{rate:.0f} GFLOP/s; the floor is a step's work at that rate."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="sections to measure")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per step/latency measurement")
    parser.add_argument("--tokenisation-repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--torch-brain-python", default=TORCH_BRAIN_PYTHON)
    parser.add_argument("--num-units", type=int, default=300)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of simulated sorting")
    parser.add_argument("--stream-duration", type=float, default=3600.0, help="seconds replayed into the stream")
    parser.add_argument("--stream-hops", type=float, nargs="+", default=STREAM_HOPS, help="hops in seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of speed.json and speed.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    path = args.out / "speed.json"
    # sections not measured now are kept from the file
    result = json.loads(path.read_text()) if path.exists() and set(args.parts) != set(PARTS) else {}

    sorting = make_sorting(args.num_units, args.duration)
    if "tokenisation" in args.parts:
        print("tokenisation ...", flush=True)
        result["tokenisation"] = bench_tokenisation(sorting, args.tokenisation_repeats)
    tokens = sorting_to_tokens(sorting)[0]
    torch_brain = torch_brain_status(args.torch_brain_python)
    print(f"torch_brain: {torch_brain}", flush=True)

    models, decode_hour, streaming = [], [], []
    for device in devices:
        for preset in args.presets:
            if "models" in args.parts:
                models.append(bench_model(preset, tokens, device, args, torch_brain))
            for n_jobs in [] if "decode" not in args.parts else [1] if device == "cuda" else [1, -1]:
                decode_hour.append(bench_decode_hour(preset, tokens, device, n_jobs))
                print(f"  {preset} decode 1 h on {device}, n_jobs={n_jobs}: {decode_hour[-1]['seconds']:.1f} s")
            for hop in args.stream_hops if "streaming" in args.parts else []:
                streaming.append(bench_streaming(preset, tokens, hop, device, args.stream_duration))
                r = streaming[-1]
                shown = f"median {r['median_ms']:.2f}, p99 {r['p99_ms']:.2f} ms, norm. {r['normalized_latency']:.3f}"
                print(f"  {preset} streaming on {device}, hop {hop * 1e3:.0f} ms: {shown}", flush=True)
    for part, measured in (("models", models), ("decode_hour", decode_hour), ("streaming", streaming)):
        if measured:
            result[part] = measured
    settings = {
        "repeats": args.repeats,
        "warmup": 2,
        "batch_size": args.batch_size,
        "num_units": args.num_units,
        "duration_s": args.duration,
        "rate_hz_per_unit": 10.0,
        "queries_per_window": QUERIES_PER_WINDOW,
        "decode_rate_hz": DECODE_RATE,
        "peak_memory": "CPU: resident high-water mark (VmHWM, reset through /proc/self/clear_refs) after the "
        "steps minus resident memory before them, in a fresh process per measurement; ru_maxrss growth where "
        "/proc is missing (see _speed_worker.py for why not ru_maxrss); CUDA: torch.cuda.max_memory_allocated",
    }
    if "streaming" in args.parts:
        settings["streaming"] = {"duration_s": args.stream_duration, "hops_s": args.stream_hops, "chunk": "one hop",
                                 "matmul_gflops": matmul_gflops()}  # fmt: skip
    result.update(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        commit=git_commit(),
        machine=machine(),
        torch_brain=torch_brain,
        total_time_s=time.perf_counter() - t_start,
        parts_measured_last=args.parts,
    )
    result["settings"] = {**result.get("settings", {}), **settings}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (args.out / "speed.md").write_text(table)
    print()
    print(table)
    print(f"wrote {path} and {args.out / 'speed.md'} in {result['total_time_s']:.0f} s")


if __name__ == "__main__":
    main()
