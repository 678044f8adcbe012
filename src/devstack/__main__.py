"""`make run`: the whole system on this machine until Ctrl-C.

PostgreSQL and MinIO run from .run/ (kept between runs; `make clean` drops them), the
services on their usual ports: auth 3001, api 3002, images 3003, and each one's /metrics on a
port of its own, as in the cluster: auth 9101, api 9102, images 9103. Only the api is meant to
be called: http://127.0.0.1:3002. DEVSTACK_STATE_DIR puts the kept state elsewhere (the README
test runs `make run` in a folder of its own, leaving a developer's .run alone).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from devstack.stack import Stack

STATE_DIR = Path(os.environ.get("DEVSTACK_STATE_DIR") or Path(__file__).resolve().parents[2] / ".run")


def main() -> int:
    stack = Stack(state_dir=STATE_DIR)
    try:
        stack.start()
        print("\nThe platform is running. Try it:")
        print("  curl -s -XPOST localhost:3002/api/v1/auth/register -H 'content-type: application/json' \\")
        print('       -d \'{"username":"alice","password":"correct horse"}\'')
        print("  API    http://127.0.0.1:3002   (OpenAPI: /api/v1/openapi.json)")
        for name, service in stack.services.items():
            print(
                f"  {name:7}{service.url}   metrics: {service.metrics_url}/metrics   log: {service.log_path}"
            )
        print(f"  PostgreSQL 127.0.0.1:{stack.postgres.port}   MinIO {stack.minio.endpoint}")
        print("Ctrl-C stops everything.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping...")
        stack.stop()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
