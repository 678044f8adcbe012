"""What every benchmark measures with: the load generator (wrk), the CPU time of process groups
read from /proc over the same run, and where each runs (CPU pinning).

Measuring policy:
- On a machine with 2 or more CPUs, everything under test runs on one CPU and the load generator
  on another: the bench process pins itself to the first before it starts the stack (children
  inherit the affinity: gunicorn workers, PostgreSQL backends, MinIO), then moves itself to the
  second, where wrk also runs (``taskset``). The ceiling app is started under ``taskset`` on the
  servers' CPU. Unpinned, the figures swung 2x from run to run on a shared 2-core machine;
  pinned, CPU-ms per request repeat within about 10-15 %. With one CPU nothing is pinned, and
  the output says so.
- The figure to trust is CPU-ms per request of each process group (the user + system time the
  kernel accounts to the group's processes over the wrk run, divided by the requests wrk saw
  answered). Requests/s and latency percentiles are reported too, but they depend on whatever
  else the machine is doing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")

# wrk calls setup() once per thread, response() for every answer and done() once at the end, in
# a Lua state of its own that sees the threads' globals only through thread:get(). Printing JSON
# from done() is wrk's documented way to report. A script may count what it sends by kind in its
# global ``counts`` table (the mixed journey does); the statuses are counted here for every run.
_REPORT = """
local bench_threads = {}
function setup(thread) table.insert(bench_threads, thread) end
statuses = {}
counts = {}
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end

local function json_counts(name)
  local totals = {}
  for _, thread in ipairs(bench_threads) do
    for key, value in pairs(thread:get(name) or {}) do
      totals[tostring(key)] = (totals[tostring(key)] or 0) + value
    end
  end
  local parts = {}
  for key, value in pairs(totals) do table.insert(parts, string.format('"%s": %d', key, value)) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write("WRK-JSON ", string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
    .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
    .. '"statuses": %s, "counts": %s}\\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean,
    json_counts("statuses"), json_counts("counts")))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: run ci/install.sh (Debian's wrk package)")
    return found


@dataclass(frozen=True)
class Pinning:
    """The CPU everything under test runs on and the CPU of the load generator; None for both
    on a machine with one CPU, where nothing is pinned."""

    servers_cpu: int | None
    load_cpu: int | None

    @classmethod
    def for_this_machine(cls) -> Pinning:
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2:
            return cls(None, None)
        return cls(usable[0], usable[1])

    @property
    def pinned(self) -> bool:
        return self.servers_cpu is not None

    def describe(self) -> str:
        if not self.pinned:
            return (
                "one CPU: nothing pinned, the load generator shares it with the servers "
                "(CPU-ms per request still hold; requests/s are a floor)"
            )
        return (
            f"servers (services, PostgreSQL, MinIO, the ceiling app) on CPU {self.servers_cpu}, "
            f"load generator (wrk, this process) on CPU {self.load_cpu}"
        )

    def taskset(self, cpu: int | None, command: list[str]) -> list[str]:
        """``command`` run on ``cpu`` (unchanged when nothing is pinned)."""
        return command if cpu is None else ["taskset", "--cpu-list", str(cpu), *command]


def parse_stat(text: str) -> list[str]:
    """The fields of a /proc/<pid>/stat line after the command name: [state, ppid, ...].

    The name is in parentheses and may itself hold spaces and parentheses, so the fields start
    after the last ')'."""
    return text.rsplit(")", 1)[1].split()


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # the process ended between listing /proc and reading it
        return None
    return parse_stat(text)


# Indexes into parse_stat()'s fields (proc(5) numbers them from 1 including pid and comm).
_PPID = 1
_UTIME, _STIME, _CUTIME, _CSTIME = 11, 12, 13, 14


@dataclass
class ProcessGroup:
    """A process and every process under it (a gunicorn master and its workers; a postmaster and
    its backends)."""

    name: str
    root_pid: int

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat:
                    children.setdefault(int(stat[_PPID]), []).append(int(entry.name))
        found, pending = [], [self.root_pid]
        while pending:
            pid = pending.pop()
            found.append(pid)
            pending += children.get(pid, [])
        return found

    def cpu_seconds(self) -> float:
        """User + system time of the live processes, plus what they collected from children that
        ended and were waited for (a worker gunicorn replaced, a backend whose client went)."""
        ticks = 0
        for pid in self.pids():
            stat = _stat(pid)
            if stat:
                ticks += sum(int(stat[index]) for index in (_UTIME, _STIME, _CUTIME, _CSTIME))
        return ticks / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds of each group between start() and stop()."""

    groups: list[ProcessGroup]
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._before = {group.name: group.cpu_seconds() for group in self.groups}

    def stop(self) -> dict[str, float]:
        self.used = {group.name: group.cpu_seconds() - self._before[group.name] for group in self.groups}
        return self.used


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    latency_ms: dict[str, float]
    cpu_seconds: dict[str, float]
    statuses: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def cpu_ms_per_request(self, group: str) -> float:
        return self.cpu_seconds[group] * 1000 / max(self.requests, 1)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "errors": self.errors,
            "statuses": self.statuses,
            "latency_ms": self.latency_ms,
            "cpu_ms_per_request": {
                group: round(self.cpu_ms_per_request(group), 3) for group in self.cpu_seconds
            },
        }

    def summary(self, groups: tuple[str, ...]) -> str:
        """One line: throughput, errors, latency and the CPU of the groups named."""
        if self.requests == 0:
            # Seen when someone else's work held the servers' CPU for the whole run.
            return f"no answer within the run's {self.seconds:.1f} s ({self.errors} errors)"
        latency = self.latency_ms
        cpu = ", ".join(f"{group} {self.cpu_ms_per_request(group):.3f}" for group in groups)
        return (
            f"{self.requests_per_second:.0f} req/s, {self.errors} errors of {self.requests}; "
            f"latency p50 {latency['p50']:.1f} ms, p90 {latency['p90']:.1f}, p99 {latency['p99']:.1f}; "
            f"CPU-ms/req: {cpu}"
        )


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    groups: list[ProcessGroup],
    script: str = "",
    threads: int = 1,
    pin_cpu: int | None = None,
) -> LoadResult:
    """Drive ``url`` with wrk for ``seconds`` over keep-alive connections; ``script`` is Lua that
    shapes the requests (wrk.method, request(), ...). Answers of 400 and above count as errors
    (wrk's status errors), as do connection errors and timeouts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script + _REPORT)
    command = [
        wrk_binary(), f"--threads={threads}", f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s", "--timeout=10s", f"--script={lua.name}", url,
    ]  # fmt: skip
    if pin_cpu is not None:
        command = ["taskset", "--cpu-list", str(pin_cpu), *command]
    meter = CpuMeter(groups)
    meter.start()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(lua.name)
    cpu = meter.stop()
    reports = [line for line in finished.stdout.splitlines() if line.startswith("WRK-JSON ")]
    if finished.returncode != 0 or not reports:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr or finished.stdout}")
    report = json.loads(reports[0].removeprefix("WRK-JSON "))
    errors = sum(
        report[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return LoadResult(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        errors=errors,
        latency_ms={name: round(report[f"{name}_us"] / 1000, 2) for name in ("p50", "p90", "p99", "max")},
        cpu_seconds=cpu,
        statuses=dict(sorted(report["statuses"].items())),
        counts=dict(sorted(report["counts"].items())),
    )


def lua_string(text: str) -> str:
    """A Lua string literal of ``text``: printable ASCII only (tokens, usernames, paths), where
    JSON's escapes are Lua's too."""
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"not printable ASCII: {text!r}")
    return json.dumps(text)
