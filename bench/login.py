"""Logins: POST /login straight to auth with the right password of one account, for BENCH_SECONDS
over one connection: auth's CPU-ms per login and so logins/s per core, at the stack's bcrypt cost.

Straight to auth, since the gateway lets one client address make 30 logins a minute. One
connection, since auth counts each attempt against the username before checking the password
and forgives it on success: concurrent logins of one account were seen refused (429) now and
then even with fewer in flight than the 5 free failures (LOGIN_FREE_FAILURES), and the CPU a
login costs does not depend on how many run at once.

The stack hashes with a lower cost than production (BCRYPT_ROUNDS in its environment) to start
fast; bcrypt's checkpw is also timed here at both costs, and the login's CPU at the production
cost estimated from that (the login's CPU with one check at the production cost in place of one at
the stack's).
"""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt
import yaml

from bench.context import PASSWORD, Bench
from bench.measure import lua_string

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AUTH_VALUES = PROJECT_ROOT / "charts" / "platform" / "charts" / "auth" / "values.yaml"
CONNECTIONS = 1
CHECKS_TIMED = 3


def production_rounds() -> int:
    """The chart's BCRYPT_ROUNDS: the cost production runs with."""
    return int(yaml.safe_load(AUTH_VALUES.read_text())["settings"]["BCRYPT_ROUNDS"])


def checkpw_ms(rounds: int) -> float:
    """CPU-ms of one bcrypt.checkpw at ``rounds`` in this process (the best of a few)."""
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds))
    timings = []
    for _ in range(CHECKS_TIMED):
        started = time.process_time()
        bcrypt.checkpw(PASSWORD.encode(), stored)
        timings.append((time.process_time() - started) * 1000)
    return min(timings)


def run(bench: Bench) -> list[str]:
    user = bench.users()[0]
    body = f'{{"username": "{user.username}", "password": "{PASSWORD}"}}'
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {lua_string(body)}\n"
    )
    result = bench.load(f"{bench.url('auth')}/login", connections=CONNECTIONS, script=script)

    stack_rounds = int(bench.stack.services["auth"].env["BCRYPT_ROUNDS"])
    prod_rounds = production_rounds()
    check_at_stack, check_at_prod = checkpw_ms(stack_rounds), checkpw_ms(prod_rounds)
    auth_ms = result.cpu_ms_per_request("auth")
    estimated_at_prod = auth_ms - check_at_stack + check_at_prod
    figures = {
        **result.as_dict(),
        "bcrypt_rounds": stack_rounds,
        "auth_cpu_ms_per_login": round(auth_ms, 2),
        "logins_per_second_per_core": round(1000 / auth_ms, 1) if auth_ms else None,
        "checkpw_ms": {
            str(stack_rounds): round(check_at_stack, 2),
            str(prod_rounds): round(check_at_prod, 2),
        },
        "production_rounds": prod_rounds,
        "estimated_auth_cpu_ms_per_login_at_production_rounds": round(estimated_at_prod, 2),
        "estimated_logins_per_second_per_core_at_production_rounds": round(1000 / estimated_at_prod, 2),
    }
    bench.record("login", figures)
    lines = [
        f"POST {{auth}}/login, one account, {CONNECTIONS} connection: {result.summary(('auth', 'postgres'))}",
        f"  bcrypt cost {stack_rounds} (the stack's BCRYPT_ROUNDS): auth {auth_ms:.1f} CPU-ms per login, "
        f"{figures['logins_per_second_per_core']} logins/s per core; checkpw alone {check_at_stack:.1f} ms",
        f"  bcrypt cost {prod_rounds} (the chart's, production): checkpw {check_at_prod:.1f} ms here, "
        f"so about {estimated_at_prod:.0f} CPU-ms per login, "
        f"{figures['estimated_logins_per_second_per_core_at_production_rounds']} logins/s per core",
    ]
    if result.errors:
        lines.append(f"  statuses: {result.statuses}")
    return lines
