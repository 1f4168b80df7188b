"""Pretrain a tiny model on two simulated sessions; run with or without torchrun.

Each rank writes its final weights and the training record to OUT, so the test can
check that ranks agree and compare the loss curve with a single-process run.
"""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import spikeinterface_poyo as sip

out = Path(sys.argv[1])
torch.set_num_threads(1)
sessions = [(*sip.simulate_session(duration=60.0, num_units=20, seed=s), f"sim{s}") for s in (21, 22)]
model = sip.pretrain(sessions, preset="tiny", max_epochs=8, max_time_s=None, batch_size=16, progress_bar=False)
rank = int(os.environ.get("RANK", "0"))
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"rank{rank}.safetensors")
(out / f"rank{rank}.json").write_text(json.dumps(model.meta["training"]))
