"""The one gunicorn configuration all services run with.

    gunicorn -c python:servicekit.gunicorn_conf 'auth:create_app()'

Everything is read from the environment; everything written goes to /tmp, so the root
filesystem can stay read-only.
"""

import os
import shutil
import tempfile

SERVICE_NAME = os.environ.get("SERVICE_NAME", "service")

# Must be set before any worker imports prometheus_client (see servicekit.metrics).
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"prometheus-{SERVICE_NAME}")
)

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# /metrics has its own port, served by the master (when_ready), so that the port the Ingress
# and the gateway reach carries the API and the probes only.
METRICS_BIND = os.environ.get("METRICS_BIND", f"0.0.0.0:{os.environ.get('METRICS_PORT', '9100')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let a worker wait on the database or another service while serving others.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Kubernetes waits terminationGracePeriodSeconds (longer than this) before SIGKILL.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", tempfile.gettempdir())
tmp_upload_dir = tempfile.gettempdir()
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = "servicekit.gunicorn_logging.JsonGunicornLogger"
# Behind the ingress and the gateway, trust X-Forwarded-* only from the cluster.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = SERVICE_NAME


def on_starting(server):
    # Samples from a previous run of the master would be summed into this one.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def when_ready(server):
    # After on_starting has emptied the directory and before the first worker forks: the
    # master alone outlives every worker, so it sums their files (prometheus_client's
    # multiprocess mode). Our server rather than the exporter's start_http_server_when_ready:
    # that one answers any path, and a half-written worker file with a 500 and a traceback.
    from servicekit import metrics

    host, _, port = METRICS_BIND.rpartition(":")
    metrics.serve(host.strip("[]"), int(port))
    server.log.info("metrics on http://%s/metrics", METRICS_BIND)


def post_worker_init(worker):
    # Before the worker takes a request: one connection for each of its threads (servicekit.database).
    from servicekit.database import open_pool_connections

    open_pool_connections(worker.wsgi, worker.cfg.threads)


def worker_exit(server, worker):
    # Spans still waiting in this worker's batch exporter (servicekit.tracing).
    from servicekit import tracing

    tracing.shutdown()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from servicekit.metrics import GUNICORN_WORKER_EXITS

    # The worker's live gauges (in flight, pool connections) stop counting; its counters stay.
    multiprocess.mark_process_dead(worker.pid)
    GUNICORN_WORKER_EXITS.inc()
