"""The fake CometAPI in its own process, and a sampler of processes' CPU use."""

from __future__ import annotations

import json
import math
import os
import resource
import select
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "API_KEY",
    "CpuSampler",
    "FakeServer",
    "children_cpu_seconds",
    "machine_busy_seconds",
    "process_cpu_seconds",
]

API_KEY = "bench-key"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READY_PREFIX = "listening on "


class FakeServer:
    """``python -m comet_replicate_async.testing`` as a child process.

    Use as a context manager: it starts the server, waits for its address, and
    stops it on exit.
    """

    def __init__(
        self, extra_args: Sequence[str], log_file: Path, env: dict[str, str]
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "comet_replicate_async.testing",
            "--port",
            "0",
            "--seed",
            "1",
            "--api-key",
            API_KEY,
            *extra_args,  # latencies (--latency MODEL=SPEC ...), faults
        ]
        self._log_file = log_file
        self._env = env
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> Self:
        with self._log_file.open("w", encoding="utf-8") as log:
            # The child keeps its own copy of the log descriptor.
            self._process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=self._env,
            )
        try:
            self.base_url = self._read_address(timeout=30.0)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _read_address(self, timeout: float) -> str:
        """Wait for the ``listening on URL`` line the server prints when ready."""
        assert self._process is not None
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.5)
            if ready:
                line = self._process.stdout.readline()
                if line.startswith(_READY_PREFIX):
                    return line[len(_READY_PREFIX) :].strip()
                if not line:
                    break  # the server exited
        raise RuntimeError(f"the fake server did not start; see {self._log_file}")

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def reset(self) -> None:
        """``POST /_fake/reset``: forget predictions and counters."""
        self._call("POST", "/_fake/reset")

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``: what the server saw since the last reset."""
        return self._call("GET", "/_fake/stats")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base_url + path, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            body: dict[str, Any] = json.load(response)
        return body


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of process *pid* so far, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name may contain spaces: count fields after its closing ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy so far (not idle, not waiting on I/O)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: guest time is already
    # in user and nice, and steal is time the hypervisor gave to someone else.
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuSampler(threading.Thread):
    """Samples processes' CPU every *interval* s, to spot a saturated core.

    A share near 1.0 in some interval means that single-threaded process was
    the bottleneck then: what waited on it (requests, results) queued up.
    """

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self._pids = pids
        self._interval = interval
        self._stop_event = threading.Event()
        #: Per process: (wall clock at the interval's end, share of one core).
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in pids}

    def _read(self) -> dict[str, float]:
        readings = {}
        for name, pid in self._pids.items():
            try:
                readings[name] = process_cpu_seconds(pid)
            except (OSError, ValueError):
                continue  # it has exited
        return readings

    def run(self) -> None:
        """Sample until `stop` is called."""
        before, cpu_before = time.monotonic(), self._read()
        while not self._stop_event.wait(self._interval):
            now, cpu = time.monotonic(), self._read()
            for name in cpu.keys() & cpu_before.keys():
                share = (cpu[name] - cpu_before[name]) / (now - before)
                self.samples[name].append((time.time(), share))
            before, cpu_before = now, cpu

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()

    def busiest(
        self, name: str, start: float = -math.inf, end: float = math.inf
    ) -> float:
        """The highest share of a core *name* used in an interval within [start, end].

        *start* and *end* are wall clocks; an interval counts if it ended in
        that span and began after *start*.
        """
        shares = [
            share
            for at, share in self.samples[name]
            if start + self._interval <= at <= end
        ]
        return max(shares, default=math.nan)
