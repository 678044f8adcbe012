"""bench/measure.py: the /proc reading that CPU per request rests on, on real processes, and the
pinning chosen for the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import measure
from bench.measure import CpuMeter, LoadResult, Pinning, ProcessGroup, lua_string, parse_stat

CHILD_CPU_SECONDS = 0.3

# A parent that, when told, forks a child which burns CHILD_CPU_SECONDS of CPU and exits, waits
# for it (so the kernel adds its time to the parent's cutime) and prints its pid.
_PARENT_OF_A_BUSY_CHILD = f"""
import os, sys, time
print("ready", flush=True)
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    end = time.process_time() + {CHILD_CPU_SECONDS}
    while time.process_time() < end:
        pass
    os._exit(0)
os.waitpid(pid, 0)
print(pid, flush=True)
sys.stdin.readline()
"""

# A parent whose child has a child of its own; prints the grandchild's pid, then waits.
_THREE_GENERATIONS = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import subprocess, sys, time; "
     "g = subprocess.Popen(['sleep', '30']); print(g.pid, flush=True); time.sleep(30)"],
    stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
sys.stdin.readline()
child.kill()
"""


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_the_cpu_of_a_child_that_ended_is_still_counted_through_its_parents_cutime():
    parent = _python(_PARENT_OF_A_BUSY_CHILD)
    try:
        assert parent.stdout.readline().strip() == "ready"
        meter = CpuMeter([ProcessGroup("tree", parent.pid)])
        meter.start()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child_pid = int(parent.stdout.readline())
        assert not Path(f"/proc/{child_pid}").exists(), "the child should be gone (waited for)"
        used = meter.stop()["tree"]
    finally:
        parent.kill()
        parent.wait()
    # The parent itself only forks and waits in between: the child's time is nearly all of it.
    assert CHILD_CPU_SECONDS - 0.05 <= used <= CHILD_CPU_SECONDS + 0.5


def test_a_group_holds_every_descendant_and_nothing_else():
    parent = _python(_THREE_GENERATIONS)
    try:
        grandchild = int(parent.stdout.readline())
        pids = ProcessGroup("tree", parent.pid).pids()
        assert parent.pid in pids
        assert grandchild in pids
        assert len(pids) == 3
        assert ProcessGroup("other", grandchild).pids() == [grandchild]
    finally:
        parent.stdin.write("done\n")
        parent.stdin.flush()
        parent.wait(timeout=10)


def test_a_group_whose_root_is_gone_uses_no_cpu():
    # Process ids stay below pid_max, so no process has this one.
    no_such_pid = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert ProcessGroup("gone", no_such_pid).cpu_seconds() == 0


def test_the_fields_start_after_the_last_parenthesis_of_the_command_name():
    # A command name may hold spaces and parentheses (prctl lets a process name itself so).
    line = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 5 1000 10\n"
    fields = parse_stat(line)
    assert fields[0] == "S"
    assert fields[1] == "1"
    assert [fields[index] for index in (11, 12, 13, 14)] == ["250", "50", "7", "3"]


def test_cpu_seconds_adds_utime_stime_cutime_and_cstime(monkeypatch, tmp_path):
    stat = "42 (gunicorn: worker) S 1 42 42 0 -1 0 0 0 0 0 300 100 50 50 20 0 1 0 5 1000 10\n"
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text(stat)
    monkeypatch.setattr(measure, "PROC", tmp_path)
    monkeypatch.setattr(measure, "CLOCK_TICKS", 100)
    assert ProcessGroup("one", 42).cpu_seconds() == pytest.approx(5.0)


def test_cpu_per_request_is_the_groups_cpu_over_the_requests_answered():
    result = LoadResult(
        requests=2000,
        seconds=10.0,
        errors=0,
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
        cpu_seconds={"api": 3.0, "postgres": 0.5},
    )
    assert result.requests_per_second == 200
    assert result.cpu_ms_per_request("api") == pytest.approx(1.5)
    assert result.as_dict()["cpu_ms_per_request"] == {"api": 1.5, "postgres": 0.25}


def test_two_cpus_or_more_pin_the_servers_to_the_first_and_the_load_to_the_second(monkeypatch):
    monkeypatch.setattr(measure.os, "sched_getaffinity", lambda pid: {3, 1, 2})
    pinning = Pinning.for_this_machine()
    assert (pinning.servers_cpu, pinning.load_cpu) == (1, 2)
    assert pinning.taskset(pinning.servers_cpu, ["gunicorn"]) == ["taskset", "--cpu-list", "1", "gunicorn"]


def test_one_cpu_pins_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(measure.os, "sched_getaffinity", lambda pid: {0})
    pinning = Pinning.for_this_machine()
    assert not pinning.pinned
    assert pinning.taskset(pinning.servers_cpu, ["gunicorn"]) == ["gunicorn"]
    assert "nothing pinned" in pinning.describe()


def test_lua_strings_take_printable_ascii_only():
    assert lua_string('Bearer a.b-c_"d') == '"Bearer a.b-c_\\"d"'
    with pytest.raises(ValueError):
        lua_string("caf\u00e9")
