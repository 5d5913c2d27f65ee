"""Cold `imgsearch search`: the wall time of a new process that searches once and exits, as a person runs it.

    python benchmarks/bench_cold_search.py --data-dir <store>[:<baseline's store>] [--data-dir ...] --query <image>
        [--runs 5] [--baseline /path/to/other/checkout]

Each run is a fresh `python -m imgsearch.ui.cli search QUERY --k 10` process (the files are in the page cache
after the first, as on a machine in use). With --baseline, the same command from another checkout (its own
.venv) runs interleaved with this one, so both see the same machine; `store:other` gives the baseline a copy
of the store of its own (an older release cannot open a catalogue migrated past its schema). Prints the median,
min and max of the runs and what the new process imported (torch, scikit-learn) in one extra run. Not collected
by pytest. Run it alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def command(checkout: Path, query: Path) -> list[str]:
    python = checkout / ".venv" / "bin" / "python"
    return [str(python if python.exists() else sys.executable), "-m", "imgsearch.ui.cli", "search", str(query),
            "--k", "10"]


def once(cmd: list[str], data_dir: Path) -> float:
    env = {**os.environ, "IMGSEARCH_DATA_DIR": str(data_dir)}
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall


def imported(cmd: list[str], data_dir: Path) -> str:
    probe = [cmd[0], "-c", "import sys, runpy; sys.argv = ['imgsearch'] + sys.argv[1:]; "
             "import atexit; atexit.register(lambda: print('IMPORTED', sorted(m for m in ('torch', 'torchvision', "
             "'sklearn', 'skops') if m in sys.modules), file=sys.stderr)); runpy.run_module('imgsearch.ui.cli', "
             "run_name='__main__')", *cmd[3:]]
    env = {**os.environ, "IMGSEARCH_DATA_DIR": str(data_dir)}
    err = subprocess.run(probe, env=env, capture_output=True, text=True).stderr
    return next((line for line in err.splitlines() if line.startswith("IMPORTED")), "IMPORTED ?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", action="append", required=True, help="STORE or STORE:BASELINE_STORE")
    ap.add_argument("--query", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with, run interleaved")
    args = ap.parse_args()
    print("command: python " + " ".join(sys.argv))
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    checkouts = {"this checkout": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print("| store | code | median s | min s | max s | imports |")
    print("|---|---|---:|---:|---:|---|")
    for spec in args.data_dir:
        mine, _, theirs = spec.partition(":")
        stores = {"this checkout": Path(mine), "baseline": Path(theirs or mine)}
        cmds = {name: command(path, args.query) for name, path in checkouts.items()}
        for name, cmd in cmds.items():
            once(cmd, stores[name])  # warm the page cache and any one-time step (an export's check)
        walls: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                walls[name].append(once(cmd, stores[name]))
        for name, w in walls.items():
            print(f"| {stores[name]} | {name} | {statistics.median(w):.2f} | {min(w):.2f} | {max(w):.2f} | "
                  f"{imported(cmds[name], stores[name]).removeprefix('IMPORTED ')} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
