"""The ratios to the ceilings measured in the same run, printed once both ceiling runs are in and
recorded beside each scenario's figures (its "ratios"). Goals are printed with each, as met or not:
figures to read, never a pass or a fail.

Each is taken from the scenario's run beside the ceiling (its "beside_ceiling": alternating
one-second runs, bench/ceiling.py), and also, for comparison, from its own run over the mean of
the ceiling's runs before and after (the "..._before_after" ratios, the way earlier runs took
them).

- posts: the api's CPU-ms per request over the bare-Flask ceiling's (goal at most 2x); requests/s
  as a percentage of the ceiling's (goal at least 40 %); PostgreSQL's CPU-ms per request over the
  database ceiling's per query (what the session handling adds around the one query).
- posts_my: the CPU-ms per request of the api and auth together (the token checks it causes)
  over the ceiling's (goal at most 2.5x).
- verify: auth's CPU-ms per request over the ceiling's (goal at most 2x).
"""

from __future__ import annotations

from bench import ceiling
from bench.context import Bench

# scenario -> (what is compared, process groups added up, goal as the largest ratio)
CPU_RATIOS = {
    "posts": ("api", ("api",), 2.0),
    "posts_my": ("api + auth", ("api", "auth"), 2.5),
    "verify": ("auth", ("auth",), 2.0),
}
POSTS_THROUGHPUT_GOAL_PERCENT = 40


def _met(met: bool) -> str:
    return "met" if met else "not met"


def run(bench: Bench) -> list[str]:
    reference = ceiling.mean(bench)
    if reference is None:
        return ["the ceiling was not measured twice in this run: no ratios"]
    before, after = bench.scenario("ceiling_before"), bench.scenario("ceiling_after")
    lines = [
        f"ceiling CPU-ms/req: before {before['cpu_ms_per_request']['ceiling']:.3f}, "
        f"after {after['cpu_ms_per_request']['ceiling']:.3f}, mean {reference['cpu_ms_per_request']:.3f}; "
        f"req/s: before {before['requests_per_second']:.0f}, after {after['requests_per_second']:.0f}, "
        f"mean {reference['requests_per_second']:.0f}"
    ]
    for name, (label, groups, goal) in CPU_RATIOS.items():
        figures = bench.scenario(name)
        if figures is None:
            continue
        side, bare = figures["beside_ceiling"]["scenario"], figures["beside_ceiling"]["ceiling"]
        if not (bare["requests_per_second"] and bare["cpu_ms_per_request"]["ceiling"]):
            # Someone else's work held the servers' CPU through every paired run.
            lines.append(f"{name}: no ratio: the ceiling answered nothing beside it")
            continue
        cpu_ms = sum(side["cpu_ms_per_request"][group] for group in groups)
        ratio = cpu_ms / bare["cpu_ms_per_request"]["ceiling"]
        before_after = (
            sum(figures["cpu_ms_per_request"][group] for group in groups) / reference["cpu_ms_per_request"]
        )
        ratios = {"cpu_to_ceiling": round(ratio, 3), "cpu_to_ceiling_before_after": round(before_after, 3)}
        lines.append(
            f"{name}: {label} {cpu_ms:.3f} CPU-ms/req = {ratio:.2f}x the ceiling's "
            f"{bare['cpu_ms_per_request']['ceiling']:.3f} beside it (goal at most {goal:g}x: "
            f"{_met(ratio <= goal)}); {before_after:.2f}x in its own run over the before/after mean"
        )
        if name == "posts":
            percent = side["requests_per_second"] / bare["requests_per_second"] * 100
            percent_before_after = figures["requests_per_second"] / reference["requests_per_second"] * 100
            ratios["requests_per_second_to_ceiling_percent"] = round(percent, 1)
            ratios["requests_per_second_to_ceiling_before_after_percent"] = round(percent_before_after, 1)
            goal_met = _met(percent >= POSTS_THROUGHPUT_GOAL_PERCENT)
            lines.append(
                f"posts: {side['requests_per_second']:.0f} req/s = {percent:.0f} % of the ceiling's "
                f"{bare['requests_per_second']:.0f} beside it "
                f"(goal at least {POSTS_THROUGHPUT_GOAL_PERCENT} %: {goal_met}); "
                f"{percent_before_after:.0f} % in its own run over the before/after mean"
            )
            database = bench.scenario("database")
            if database:
                per_query = database["cpu_ms_per_query"]["postgres"]
                postgres_ratio = figures["cpu_ms_per_request"]["postgres"] / per_query if per_query else None
                ratios["postgres_cpu_to_database_ceiling"] = (
                    round(postgres_ratio, 3) if postgres_ratio is not None else None
                )
                lines.append(
                    f"posts: postgres {figures['cpu_ms_per_request']['postgres']:.3f} CPU-ms/req = "
                    + (f"{postgres_ratio:.2f}x" if postgres_ratio is not None else "n/a (no CPU seen)")
                    + f" the psycopg2 loop's {per_query:.3f} per query"
                )
        bench.record(name, {"ratios": ratios})
    return lines
