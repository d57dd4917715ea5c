"""Run one command and measure it: wall-clock seconds and peak memory.

Peak memory comes from two places:

- ``/usr/bin/time -f %M``: the kernel's peak RSS (ru_maxrss) of the command, which for a command
  that starts worker processes is the *largest single process*, not their sum;
- a sampler reading ``/proc`` every ``SAMPLE_SECONDS``: the peak of the *sum* of RSS over the
  command's whole process tree (can miss a short spike, but sees every worker).

``resource.getrusage(RUSAGE_CHILDREN)`` is not used: its ru_maxrss is the maximum over every
child this script ever waited for, so it cannot tell one contender from the previous one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Run:
    command: tuple[str, ...]
    returncode: int
    seconds: float
    peak_rss_kib: int  # largest single process (ru_maxrss via /usr/bin/time)
    tree_rss_kib: int  # peak of the summed RSS of the whole process tree (sampled)
    stdout: Path
    stderr: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")


def check_gnu_time() -> None:
    if not os.access(GNU_TIME, os.X_OK):
        hint = "apt-get install time" if shutil.which("apt-get") else "install GNU time"
        raise SystemExit(f"bench: {GNU_TIME} is missing ({hint})")


def run(command: Sequence[str], *, env: Mapping[str, str], logs: Path, name: str, cwd: Path) -> Run:
    """Run ``command`` to completion; its stdout and stderr go to ``logs/name.{out,err}``."""
    rss_file = logs / f"{name}.maxrss"
    stdout, stderr = logs / f"{name}.out", logs / f"{name}.err"
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *command]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        # Its own process group: on Ctrl-C we stop the contender and its workers ourselves,
        # all of them (killing only /usr/bin/time would orphan the command it runs).
        proc = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            tree_peak = _sample_until_exit(proc)
            seconds = time.perf_counter() - started
        finally:
            if proc.poll() is None:  # interrupted
                _kill_group(proc)
    return Run(
        tuple(command), proc.returncode, seconds, _read_maxrss(rss_file), tree_peak, stdout, stderr
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group start_new_session made for it
    proc.wait()


def _sample_until_exit(proc: subprocess.Popen[bytes]) -> int:
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(SAMPLE_SECONDS):
            # The tree below /usr/bin/time: the contender and anything it started.
            peak = max(peak, sum(tree_rss_kib(child) for child in _children(proc.pid)))

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        proc.wait()
    finally:
        stop.set()
        sampler.join()
    return peak


def tree_rss_kib(root: int) -> int:
    """Summed VmRSS of ``root`` and all its descendants (0 for processes already gone)."""
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        total += _vm_rss_kib(pid)
        pending.extend(_children(pid))
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _vm_rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _read_maxrss(path: Path) -> int:
    """GNU time writes '%M' as the last line (after 'Command exited with...' on failure)."""
    try:
        lines = path.read_text().split()
    except OSError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0
