"""`make bench`: run every benchmark in this folder against a fresh local stack.

Each module bench/<name>.py defines ``run(stack) -> list[str]``: it measures one target
against the running system and returns the lines to print.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench
from devstack.stack import Stack


def main(selected: list[str]) -> int:
    names = [m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")]
    names = [n for n in names if not selected or n in selected]
    stack = Stack()
    try:
        stack.start()
        for name in sorted(names):
            print(f"== {name}", flush=True)
            for line in importlib.import_module(f"bench.{name}").run(stack):
                print(f"   {line}", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
