"""Import cost: what ``import spikeinterface_poyo`` and ``spikeinterface-poyo --help`` take.

    .venv/bin/python benchmarks/import_time.py [--repeats 5]

Each measurement runs in a fresh interpreter: the package's cumulative import time from
``python -X importtime`` and the wall time of ``python -m spikeinterface_poyo --help`` next to a
bare ``python -c pass``, medians over the repeats. Writes benchmarks/results/import_time.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _provenance import git_commit, machine

RESULTS = Path(__file__).parent / "results"


def import_time_us() -> int:
    """Cumulative microseconds of ``import spikeinterface_poyo`` in a fresh interpreter."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import spikeinterface_poyo"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    line = next(row for row in reversed(err.splitlines()) if row.rstrip().endswith("| spikeinterface_poyo"))
    return int(line.split("|")[1])


def wall_s(args: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=True)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    imports = [import_time_us() for _ in range(args.repeats)]
    helps = [wall_s(["-m", "spikeinterface_poyo", "--help"]) for _ in range(args.repeats)]
    bare = [wall_s(["-c", "pass"]) for _ in range(args.repeats)]
    result = {
        "commit": git_commit(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"repeats": args.repeats, "python": sys.version.split()[0]},
        "import_ms": {"median": statistics.median(imports) / 1000, "all": [v / 1000 for v in imports]},
        "help_s": {"median": statistics.median(helps), "all": helps},
        "bare_python_s": {"median": statistics.median(bare), "all": bare},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "import_time.json").write_text(json.dumps(result, indent=2))
    print(f"import spikeinterface_poyo: {result['import_ms']['median']:.1f} ms (median of {args.repeats})")
    print(f"--help: {result['help_s']['median']:.3f} s; bare python: {result['bare_python_s']['median']:.3f} s")


if __name__ == "__main__":
    main()
