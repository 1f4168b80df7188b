"""One timing measurement in a fresh process, for benchmarks/speed.py.

Runs with either implementation of POYO, ours or torch_brain 0.2.1's, so both are
measured by the same code on the same batch. It must import neither spikeinterface
nor our package's dependencies when ``--impl torch_brain`` (it runs in torch_brain's
own environment), hence a standalone script.

    python _speed_worker.py --impl {ours,torch_brain} --mode {train,infer} --work DIR [--device cpu]

``DIR`` holds ``config.json`` (architecture and vocabularies), ``weights.safetensors``
(initial weights, so both implementations compute the same function) and
``batch.safetensors`` (inputs, targets, and a one-window batch). The result is one
line of JSON on stdout.

Peak memory: on the CPU, tracemalloc does not see torch's allocations, so the peak is
read from the kernel's resident-memory high-water mark, in a fresh process per
measurement (earlier measurements' peaks stay out of it): the mark is reset once the
libraries, model, optimiser and batch are loaded, and the peak is its value after the
steps minus the resident memory before them, i.e. what the steps needed on top
(activations, gradients, optimiser state). On Linux the mark is ``VmHWM`` of
``/proc/self/status``, reset by writing 5 to ``/proc/self/clear_refs``. It is the same
per-process high-water mark that ``getrusage(RUSAGE_SELF).ru_maxrss`` reports, but
``ru_maxrss`` cannot be reset and, because Python's subprocess starts children with
vfork, it starts at the *parent's* peak (over 1 GiB here, where speed.py holds a
10.8 M-spike sorting), which would hide the steps' memory entirely. Elsewhere the
worker falls back to the growth of ``ru_maxrss`` and says so. On CUDA it is
``torch.cuda.max_memory_allocated`` over the same steps.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

INPUTS = (
    "input_unit_index",
    "input_timestamps",
    "input_token_type",
    "input_mask",
    "latent_index",
    "latent_timestamps",
    "session_index",
    "output_timestamps",
)


def _proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MiB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    return None


def ru_maxrss_mib() -> float:
    scale = 1 / 1024**2 if sys.platform == "darwin" else 1 / 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def start_peak_tracking() -> tuple[str, float]:
    """Reset the resident high-water mark; return the method and the baseline in MiB."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        return "VmHWM", _proc_status_mib("VmRSS")
    except OSError:
        return "ru_maxrss", ru_maxrss_mib()


def peak_since(method: str) -> float:
    return _proc_status_mib("VmHWM") if method == "VmHWM" else ru_maxrss_mib()


def build_model(impl: str, config: dict, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The POYO of ``impl`` with the given architecture, vocabularies and weights."""
    if impl == "ours":
        from spikeinterface_poyo.models.poyo import POYO

        model = POYO(**config["architecture"])
        model.unit_emb.extend_vocab(config["unit_vocab"])
        model.session_emb.extend_vocab(config["session_vocab"])
    else:
        from torch_brain.models import POYO

        model = POYO(**config["architecture"])
        model.unit_emb.initialize_vocab(config["unit_vocab"])
        model.session_emb.initialize_vocab(config["session_vocab"])
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    missing = set(weights) ^ set(own)
    if missing:
        raise RuntimeError(f"{impl} POYO does not have the same tensors as the reference weights: {sorted(missing)}")
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(weights[name])
    return model


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    err = ((pred - target) ** 2).mean(dim=-1)
    return (err * mask).sum() / mask.sum().clamp(min=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_train(model, batch: dict, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per AdamW step (forward, masked MSE, backward, clipping, update), warm-up excluded."""
    inputs = {k: batch[k] for k in INPUTS}
    target, mask = batch["target"], batch["target_mask"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        loss = masked_mse(model(**inputs), target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def measure_infer(model, batch: dict, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per forward pass on the one-window batch (eval mode, no autograd)."""
    inputs = {k: batch[f"single_{k}"] for k in INPUTS}
    model.eval()
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        model(**inputs)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def eval_output(model, batch: dict, work: Path, impl: str) -> None:
    """Save the eval-mode output on the training batch, to check both implementations agree."""
    model.eval()
    out = model(**{k: batch[k] for k in INPUTS})
    save_file({"output": out.float().cpu().contiguous()}, work / f"output_{impl}.safetensors")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "torch_brain"], required=True)
    parser.add_argument("--mode", choices=["train", "infer"], required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    config = json.loads((args.work / "config.json").read_text())
    model = build_model(args.impl, config, load_file(args.work / "weights.safetensors")).to(device)
    batch = {k: v.to(device) for k, v in load_file(args.work / "batch.safetensors").items()}
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    method, before = start_peak_tracking()
    measure = measure_train if args.mode == "train" else measure_infer
    times = measure(model, batch, device, args.warmup, args.repeats)
    after = peak_since(method)
    if args.mode == "infer":  # after measuring, so its batch-32 forward pass does not set the peak
        eval_output(model, batch, args.work, args.impl)
    result = {
        "impl": args.impl,
        "mode": args.mode,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "times_s": times,
        "median_s": statistics.median(times),
        "memory_method": method,
        "rss_before_mib": before,
        "peak_rss_mib": after,
        "peak_mib": after - before,
    }
    if device.type == "cuda":
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base_alloc) / 1024**2
    print(json.dumps(result))


if __name__ == "__main__":
    main()
