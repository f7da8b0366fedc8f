"""Peak memory of a command and all its child processes (Linux).

    python benchmarks/peak_memory.py [--every 0.2] -- COMMAND [ARGS...]

Samples every process of the command's tree and prints the peak of the summed PSS
(proportional set size: a page shared by k processes, like a memory-mapped data file, counts
1/k in each, so the sum counts it once) and of the summed RSS (which counts shared pages in
every process). The command's exit status is passed on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    proc = subprocess.Popen(cmd)
    peak_pss = peak_rss = procs = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        pss = sum(_kib(p, "Pss") for p in pids)
        if pss > peak_pss:
            peak_pss, procs = pss, len(pids)
        peak_rss = max(peak_rss, sum(_kib(p, "Rss") for p in pids))
        time.sleep(args.every)
    print(
        f"peak total PSS {peak_pss / 2**20:.2f} GiB ({procs} processes then), "
        f"peak total RSS {peak_rss / 2**20:.2f} GiB",
        file=sys.stderr,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
