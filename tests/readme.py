"""The commands the READMEs give, read from the READMEs, so the tests run exactly what a user reads."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT

READMES = (PROJECT_ROOT / "README.md", PROJECT_ROOT / "charts" / "platform" / "README.md")


def _commands() -> list[str]:
    found = []
    for readme in READMES:
        text = readme.read_text()
        found += re.findall(r"`([^`\n]+)`", text)
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S):
            found += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return found


def readme_command(prefix: str) -> str:
    """The one command the READMEs give that starts with prefix (they may repeat it verbatim)."""
    matches = {command for command in _commands() if command.startswith(prefix)}
    assert len(matches) == 1, f"the READMEs give {len(matches)} commands starting with {prefix!r}: {matches}"
    return matches.pop()


def readme_has(command: str) -> str:
    """The command, after checking that the READMEs give it exactly so."""
    assert command in _commands(), f"the READMEs do not give {command!r}"
    return command


def readme_block(heading: str) -> str:
    """The shell block right under a heading of the chart README (a procedure run as a whole)."""
    text = READMES[1].read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\n.*?```(?:sh|bash)\n(.*?)```", text, re.S | re.M)
    assert match, f"no shell block under {heading!r} in {READMES[1]}"
    return match.group(1)


def readme_blocks_after(command: str) -> list[str]:
    """The shell blocks of the project README's section that gives `command` in a block, after
    that block (the steps a user takes once it runs)."""
    text = READMES[0].read_text()
    for section in re.split(r"^## ", text, flags=re.M):
        blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", section, re.S)
        for index, block in enumerate(blocks):
            if any(line.split("#")[0].strip() == command for line in block.splitlines()):
                return blocks[index + 1 :]
    raise AssertionError(f"no shell block of {READMES[0]} gives {command!r}")
