"""The content and title checks of a new post: linear in the length, and in agreement with the
patterns the OpenAPI document states."""

from __future__ import annotations

import re
import sys
import time

import pytest

from api.posts import (
    CONTENT_PATTERN,
    MAX_CONTENT_CHARACTERS,
    MAX_TITLE_CHARACTERS,
    TITLE_PATTERN,
    valid_content,
    valid_title,
)
from servicekit.errors import ApiError

# Each of these made the former content pattern backtrack over every split of the text: about
# 10,000² steps, a fifth of a second of a worker's CPU per request.
ADVERSARIAL_CONTENTS = ["a" * 9_999 + "\x00", " a" * 4_999 + " \x00", "a" * 10_000, " " * 9_999 + "\x00"]
SAMPLES = [
    "x",
    " x ",
    "é",
    "\u3000x\u3000",
    "line\nbreak",
    "",
    " ",
    " \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000",
    "a\x00",
    "\x00",
    "\x00a",
    " \x00 ",
    *ADVERSARIAL_CONTENTS,
]


def _accepts(check, value: str) -> bool:
    try:
        check(value)
    except ApiError as error:
        assert error.status == 400
        return False
    return True


def _regex_calls_during(check, value: str) -> list:
    """Every call into the re module or to a compiled pattern's method while check(value) runs."""
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(re.__path__[0]):
            calls.append(frame.f_code.co_name)
        elif event == "c_call" and isinstance(getattr(arg, "__self__", None), re.Pattern):
            calls.append(arg)

    sys.setprofile(profile)
    try:
        _accepts(check, value)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("content", ADVERSARIAL_CONTENTS, ids=["nul-after-text", "spaced", "long", "blank"])
def test_a_long_adversarial_content_is_checked_without_a_regular_expression_and_quickly(content):
    assert _regex_calls_during(valid_content, content) == []
    started = time.perf_counter()
    _accepts(valid_content, content)
    assert time.perf_counter() - started < 0.05


def test_content_with_nul_or_only_whitespace_is_refused_with_the_rule():
    for content in ("a" * 9_999 + "\x00", " \t\n\u3000"):
        with pytest.raises(ApiError) as refused:
            valid_content(content)
        assert refused.value.status == 400
        assert refused.value.extra["errors"] == [
            {
                "field": "content",
                "message": "must contain something besides whitespace, and no NUL characters",
            }
        ]


def test_the_title_check_uses_no_regular_expression_either():
    assert _regex_calls_during(valid_title, "t" * 199 + "\x00") == []


@pytest.mark.parametrize(
    ("check", "pattern", "maximum"),
    [
        (valid_content, CONTENT_PATTERN, MAX_CONTENT_CHARACTERS),
        (valid_title, TITLE_PATTERN, MAX_TITLE_CHARACTERS),
    ],
)
def test_the_documented_patterns_accept_exactly_what_the_checks_accept(check, pattern, maximum):
    # The lengths are documented as minLength/maxLength, apart from the patterns.
    for value in (sample for sample in SAMPLES if len(sample) <= maximum):
        assert _accepts(check, value) == bool(re.search(pattern, value)), repr(value)


@pytest.mark.parametrize("content", ADVERSARIAL_CONTENTS)
def test_the_documented_content_pattern_is_linear_too(content):
    # Clients and contract tests run it; a pattern that backtracks would stall them instead.
    started = time.perf_counter()
    re.search(CONTENT_PATTERN, content)
    assert time.perf_counter() - started < 0.05
