"""How fast the command line starts: `unetseg --help` and `import unetseg`, against `import torch` in the same run.

Each is a fresh Python process, timed 7 times in alternation (the median is kept), so a busy machine slows all
of them alike. Goal: `unetseg --help` under 0.5 s (heavy libraries are imported where they are used).

    python bench/cli_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from unetseg.runtime import cpu_model

CASES = {
    "unetseg --help": [sys.executable, "-m", "unetseg.cli", "--help"],
    "import unetseg": [sys.executable, "-c", "import unetseg"],
    "python alone": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.rounds):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    print(f"CPU: {cpu_model()}; {args.rounds} rounds in alternation, median seconds (no model runs: no precision)")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"{name:>16}: {t:6.3f} s  ({t / med['import torch']:.2f}x import torch)")
    print(f"unetseg --help {'meets' if med['unetseg --help'] < 0.5 else 'misses'} the goal of < 0.5 s")


if __name__ == "__main__":
    main()
