"""The API's own routes under load, each driven by wrk for BENCH_SECONDS over 16 keep-alive
connections (the ratios to the ceiling are printed once both ceiling runs are in: bench/ratios.py):

- posts: GET /api/v1/posts, public, a page of 20 of the 50 posts seeded: one indexed query.
- posts_my: GET /api/v1/posts/my with one bearer token, which the gateway verifies through auth
  once and then answers from its token cache (TOKEN_CACHE_SECONDS).
- verify: POST /verify straight to auth with a bearer token: what each uncached request costs
  auth.
- auth_latency: GET /api/v1/posts/my with a token of its own per request (MINTED_TOKENS, taken in
  turn, so none comes back while a gateway worker could still have it cached), one request at a
  time. Each request costs the gateway one call to auth, so the run gives a call per request, at
  a steady load. One connection, because such a request costs the servers' one CPU about 4 ms:
  a second connection would already keep it busy all the time, and every latency would then be
  mostly one request waiting for the other. The gateway -> auth POST /verify latency at that
  load, as the api itself measures it (api_upstream_request_duration_seconds{target="auth"},
  read from its metrics port before and after the run).

After each of posts, posts_my and verify, the same load runs again beside the ceiling app, in
alternating one-second runs (bench/ceiling.py: beside): its ratios are taken from those.

The api workers' resident memory before the posts and posts_my runs and at their peak (VmHWM,
reset first) is printed too.
"""

from __future__ import annotations

import re

import requests

from bench import ceiling
from bench.context import SETUP_TIMEOUT_SECONDS, Bench
from bench.measure import lua_string

POSTS = 50
CONNECTIONS = 16
UNQUEUED_CONNECTIONS = 1
# Far more than the gateway answers in TOKEN_CACHE_SECONDS (5) one request at a time (about 200
# a second here), so that no token is sent twice while a gateway worker may have it cached.
MINTED_TOKENS = 4000


def run(bench: Bench) -> list[str]:
    api, auth = bench.url("api"), bench.url("auth")
    writer = bench.users()[0]
    for number in range(POSTS):
        answer = requests.post(
            f"{api}/api/v1/posts",
            json={"content": f"post number {number}"},
            headers={"Authorization": writer.authorization},
            timeout=SETUP_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()

    lines = []
    bearer = f'wrk.headers["Authorization"] = {lua_string(writer.authorization)}\n'
    verify = 'wrk.method = "POST"\n' + bearer
    with ceiling.serving(bench) as bare:
        for scenario, title, url, script, groups in (
            ("posts", "GET /api/v1/posts (public)", f"{api}/api/v1/posts", "", ("api", "postgres")),
            (
                "posts_my",
                "GET /api/v1/posts/my (bearer token, cached by the gateway)",
                f"{api}/api/v1/posts/my",
                bearer,
                ("api", "auth", "postgres"),
            ),
        ):
            service = bench.stack.services["api"]
            rss_before = service.rss_kib()
            peaks_reset = service.reset_peaks()
            result = bench.load(url, connections=CONNECTIONS, script=script)
            peaks = service.peak_rss_kib()
            bench.record(
                scenario,
                {**result.as_dict(), "api_worker_peak_rss_mib": round(max(peaks.values()) / 1024, 1)},
            )
            lines.append(f"{title}: {result.summary(groups)}")
            lines.append(f"  api workers' memory: {_memory_line(rss_before, peaks, peaks_reset)}")
            lines += _statuses_if_errors(result)
            lines.append(_beside_the_ceiling(bench, bare, scenario, url, script=script, groups=groups))

        result = bench.load(f"{auth}/verify", connections=CONNECTIONS, script=verify)
        bench.record("verify", result.as_dict())
        lines.append(
            f"POST {{auth}}/verify (bearer token, straight to auth): {result.summary(('auth', 'postgres'))}"
        )
        lines += _statuses_if_errors(result)
        verify_groups = ("auth", "postgres")
        lines.append(
            _beside_the_ceiling(bench, bare, "verify", f"{auth}/verify", script=verify, groups=verify_groups)
        )

    lines += _auth_latency(bench, bench.minted_tokens(MINTED_TOKENS))
    return lines


def _beside_the_ceiling(
    bench: Bench, bare: ceiling.CeilingApp, scenario: str, url: str, *, script: str, groups: tuple[str, ...]
) -> str:
    """The scenario again, in alternating runs with the ceiling app (ceiling.beside): the figures
    its ratios are taken from (bench/ratios.py)."""
    paired = ceiling.beside(bench, bare, url, connections=CONNECTIONS, script=script)
    bench.record(scenario, {"beside_ceiling": paired})
    side, reference = paired["scenario"], paired["ceiling"]
    cpu = ", ".join(f"{group} {side['cpu_ms_per_request'][group]:.3f}" for group in groups)
    errors = side["errors"] + reference["errors"]
    runs = f"{paired['rounds']} alternating {paired['round_seconds']}-s runs of each"
    if errors:
        runs += f", {errors} errors"
    return (
        f"  beside the ceiling ({runs}): {side['requests_per_second']:.0f} req/s, CPU-ms/req {cpu}; "
        f"ceiling {reference['requests_per_second']:.0f} req/s, "
        f"{reference['cpu_ms_per_request']['ceiling']:.3f} CPU-ms/req"
    )


def _statuses_if_errors(result) -> list[str]:
    return [f"  statuses: {result.statuses}"] if result.errors else []


def _memory_line(rss_before: dict[int, int], peaks: dict[int, int], peaks_reset: bool) -> str:
    since = "during the run" if peaks_reset else "since start (the kernel refused a reset)"
    return "; ".join(
        f"worker {pid} RSS {rss_before[pid] / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB {since}"
        if pid in rss_before
        else f"worker {pid} (started during the run) peak {peak / 1024:.0f} MiB"
        for pid, peak in peaks.items()
    )


def _auth_latency(bench: Bench, tokens: list[str]) -> list[str]:
    """Each request whose token a gateway worker has not verified in the last few seconds costs
    one POST /verify to auth: with a new token per request, every request does."""
    authorizations = ", ".join(lua_string(f"Bearer {token}") for token in tokens)
    # One wrk thread, so one counter: each token once, in turn, until the list runs out.
    script = (
        f"local authorizations = {{{authorizations}}}\n"
        "local sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        "  return wrk.format(nil, nil, {Authorization = authorizations[(sent - 1) % #authorizations + 1]})\n"
        "end\n"
    )
    metrics_url = bench.stack.services["api"].metrics_url
    before = _auth_histogram(metrics_url)
    # No warm-up: its calls would count in the histogram, and the run would send its tokens again
    # while they are cached. The pools are warm from the runs before this one.
    result = bench.load(
        f"{bench.url('api')}/api/v1/posts/my", connections=UNQUEUED_CONNECTIONS, script=script, warm_up=False
    )
    after = _auth_histogram(metrics_url)

    calls = after["count"] - before["count"]
    figures = {**result.as_dict(), "tokens": len(tokens), "auth_calls": calls}
    summary = result.summary(("api", "auth", "postgres"))
    label = f"GET /api/v1/posts/my with a new token per request, {UNQUEUED_CONNECTIONS} connection"
    lines = [f"{label}: {summary}"]
    lines += _statuses_if_errors(result)
    if calls <= 0:
        bench.record("auth_latency", figures)
        return [*lines, "  gateway -> auth: no calls recorded"]
    within = {
        bound: (after["buckets"][bound] - before["buckets"].get(bound, 0)) / calls
        for bound in after["buckets"]
    }
    figures |= {
        "auth_call_mean_ms": round((after["sum"] - before["sum"]) / calls * 1000, 2),
        "auth_call_p50_bound_ms": _bound_ms(within, 0.50),
        "auth_call_p99_bound_ms": _bound_ms(within, 0.99),
    }
    bench.record("auth_latency", figures)
    p50, p99 = figures["auth_call_p50_bound_ms"], figures["auth_call_p99_bound_ms"]
    goal = "met" if p99 is not None and p99 <= 10 else "not met"
    lines.append(
        f"  gateway -> auth POST /verify at that load: {calls:.0f} calls for {result.requests} requests, "
        f"mean {figures['auth_call_mean_ms']:.1f} ms, 50% within {_bound_text(p50)}, "
        f"99% within {_bound_text(p99)} (goal under 10 ms: {goal}; the api's own histogram buckets)"
    )
    return lines


def _bound_ms(within: dict[float, float], share: float) -> float | None:
    """The smallest histogram bucket bound holding at least ``share`` of the calls, in ms; None
    when only +Inf does."""
    return next((bound * 1000 for bound, part in sorted(within.items()) if part >= share), None)


def _bound_text(bound_ms: float | None) -> str:
    return "no bucket (over the largest)" if bound_ms is None else f"{bound_ms:g} ms"


def _auth_histogram(metrics_url: str) -> dict:
    """The api's api_upstream_request_duration_seconds{target="auth"}: sum, count and the
    cumulative buckets by upper bound in seconds (+Inf left out)."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    histogram = {"sum": 0.0, "count": 0.0, "buckets": {}}
    for line in text.splitlines():
        if not line.startswith("api_upstream_request_duration_seconds") or 'target="auth"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("api_upstream_request_duration_seconds_sum"):
            histogram["sum"] = value
        elif line.startswith("api_upstream_request_duration_seconds_count"):
            histogram["count"] = value
        elif (match := re.search(r'le="([^"]+)"', line)) and match.group(1) != "+Inf":
            histogram["buckets"][float(match.group(1))] = value
    return histogram
