"""Logs and traces: one request followed through the gateway, auth and images, into a real Jaeger."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from devstack.jaeger import JaegerServer
from devstack.services import ServiceProcess
from devstack.wait import free_port, wait_until
from tests.observability.conftest import png_bytes
from tests.observability.promql import PROJECT_ROOT


def json_lines(service: ServiceProcess) -> list[dict]:
    return [json.loads(line) for line in service.logs().splitlines() if line.strip()]


def lines_with(service: ServiceProcess, request_id: str) -> list[dict]:
    return [line for line in json_lines(service) if line.get("request_id") == request_id]


def access_line(service: ServiceProcess, request_id: str) -> dict | None:
    return next((line for line in lines_with(service, request_id) if line.get("kind") == "access"), None)


def run_python(program: str) -> subprocess.CompletedProcess:
    """Run ``program`` in a fresh interpreter (a clean module state) and require success."""
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROJECT_ROOT,
        env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.integration
def test_one_request_id_can_be_followed_through_the_logs_of_gateway_auth_and_images(platform_stack, traffic):
    services = platform_stack.services
    api = f"{services['api'].url}/api/v1"
    user, password = f"f{uuid.uuid4().hex[:10]}", "correct horse battery staple"
    assert requests.post(f"{api}/auth/register", json={"username": user, "password": password}, timeout=10).ok
    # A token the gateway has never seen, so it asks auth to verify it within our request.
    token = requests.post(
        f"{api}/auth/login", json={"username": user, "password": password}, timeout=10
    ).json()["access_token"]
    request_id = f"follow-{uuid.uuid4().hex}"
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)

    response = requests.post(
        f"{api}/images/upload",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Request-ID": request_id,
            "traceparent": f"00-{trace_id}-{caller_span}-01",
        },
        files={"file": ("dot.png", png_bytes(), "image/png")},
        timeout=10,
    )

    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    expected = {"api": "/api/v1/images/upload", "auth": "/verify", "images": "/upload"}
    lines = wait_until(
        lambda: (
            {name: access_line(services[name], request_id) for name in expected}
            if all(access_line(services[name], request_id) for name in expected)
            else None
        ),
        timeout=10,
        message=f"access log lines of {request_id} in api, auth and images",
    )
    for name, route in expected.items():
        line = lines[name]
        assert line["service"] == name
        assert line["route"] == route
        assert line["status"] in (200, 201)
        assert isinstance(line["duration_ms"], float | int)
        # The W3C trace id the client sent is the one every service worked under.
        assert line["trace_id"] == trace_id, name
    stored = [
        line for line in lines_with(services["images"], request_id) if line["message"] == "image stored"
    ]
    assert stored and stored[0]["trace_id"] == trace_id and stored[0]["route"] == "/upload"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["auth", "api", "images"])
def test_every_log_line_is_one_json_object_with_time_level_service_and_message(platform_stack, traffic, name):
    lines = json_lines(platform_stack.services[name])  # raises on any line that is not JSON
    assert lines
    for line in lines:
        assert {"time", "level", "service", "message"} <= set(line), line
        assert line["service"] == name
    access = [line for line in lines if line.get("kind") == "access"]
    assert access, "no access log line"
    for line in access:
        assert {"request_id", "trace_id", "method", "route", "status", "duration_ms"} <= set(line)


def test_trace_export_is_off_by_default_and_needs_no_opentelemetry_import():
    program = (
        "import sys\n"
        "from servicekit import config\n"
        "from servicekit.app import create_service_app\n"
        "from servicekit.config import ServiceSettings\n"
        "settings = config.load(ServiceSettings, {'DATABASE_URL': 'postgresql+psycopg2://u:p@127.0.0.1:1/x'})\n"
        "assert settings.otlp_endpoint == ''\n"
        "app = create_service_app('probe', settings)\n"
        "assert app.test_client().get('/live').status_code == 200\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    run_python(program)


class OtlpReceiver:
    """A collector stand-in: accepts OTLP/HTTP protobuf trace exports and keeps the spans."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[tuple[dict, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = trace_service_pb2.ExportTraceServiceRequest()
                export.ParseFromString(body)
                for resource_spans in export.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        receiver.spans.extend((resource, span) for span in scope.spans)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_id: str) -> list[tuple[dict, object]]:
        return [(resource, span) for resource, span in self.spans if span.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp_receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.mark.integration
def test_gunicorn_workers_export_spans_that_continue_the_callers_trace(platform_stack, otlp_receiver):
    env = {
        **platform_stack.services["auth"].env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    service = ServiceProcess("auth", free_port(), env, workers=2).start()
    try:
        trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        for _ in range(8):
            live = requests.get(
                f"{service.url}/live", headers={"traceparent": f"00-{trace_id}-{caller_span}-01"}, timeout=5
            )
            assert live.status_code == 200
        untraced_id = f"root-{uuid.uuid4().hex}"
        assert requests.get(f"{service.url}/live", headers={"X-Request-ID": untraced_id}, timeout=5).ok

        spans = wait_until(
            lambda: len(otlp_receiver.of_trace(trace_id)) >= 8 and otlp_receiver.of_trace(trace_id),
            timeout=15,
            message="8 spans of the caller's trace at the OTLP receiver",
        )
        master_pid = service.process.pid
        for resource, span in spans:
            assert resource["service.name"] == "auth"
            # Exported by a worker: the master never builds a tracer.
            assert not resource["service.instance.id"].endswith(f"-{master_pid}")
            assert span.name == "GET /live"
            assert span.parent_span_id.hex() == caller_span
            assert span.kind == span.SPAN_KIND_SERVER

        # Without a traceparent the service starts the trace, and its logs carry the same id.
        logged = wait_until(lambda: access_line(service, untraced_id), timeout=10, message="access line")
        roots = wait_until(
            lambda: otlp_receiver.of_trace(logged["trace_id"]), timeout=15, message="the root span"
        )
        assert roots[0][1].parent_span_id == b""
    finally:
        service.stop()


def test_a_call_to_another_service_names_the_exported_span_as_its_parent(otlp_receiver):
    """What the gateway sends on to auth and images links the callee's span to its own."""
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    program = (
        "from servicekit import config, context, tracing\n"
        "from servicekit.app import create_service_app\n"
        "from servicekit.config import ServiceSettings\n"
        "settings = config.load(ServiceSettings, {'DATABASE_URL': 'postgresql+psycopg2://u:p@127.0.0.1:1/x',"
        f" 'OTEL_EXPORTER_OTLP_ENDPOINT': '{otlp_receiver.url}'}})\n"
        "app = create_service_app('gateway', settings)\n"
        "app.add_url_rule('/call', 'call', lambda: context.outbound_headers())\n"
        f"incoming = {{'traceparent': '00-{trace_id}-{caller_span}-01'}}\n"
        "answer = app.test_client().get('/call', headers=incoming)\n"
        # As under gunicorn, the WSGI server span ends when the response is closed.
        "answer.close()\n"
        "tracing.shutdown()\n"
        "print(answer.get_json()['traceparent'])\n"
    )
    result = run_python(program)
    version, sent_trace, parent, flags = result.stdout.strip().split("-")

    ((_, span),) = otlp_receiver.of_trace(trace_id)
    assert (version, sent_trace, flags) == ("00", trace_id, "01")
    assert parent == span.span_id.hex()
    assert span.parent_span_id.hex() == caller_span
    assert span.name == "GET /call"


@pytest.fixture
def jaeger():
    server = JaegerServer().start()
    yield server
    server.destroy()


@pytest.fixture
def traced_services(platform_stack, jaeger):
    """auth, images and api again, on the session's databases, exporting every trace to Jaeger."""
    tracing_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    ports = {name: free_port() for name in ("auth", "images", "api")}
    auth_url = f"http://127.0.0.1:{ports['auth']}"
    wiring = {
        "auth": {},
        "images": {"AUTH_JWKS_URL": f"{auth_url}/.well-known/jwks.json"},
        "api": {"AUTH_SERVICE_URL": auth_url, "IMAGES_SERVICE_URL": f"http://127.0.0.1:{ports['images']}"},
    }
    started: dict[str, ServiceProcess] = {}
    try:
        for name, own in wiring.items():  # the gateway last, once what it calls answers
            env = {**platform_stack.services[name].env, **own, **tracing_env}
            started[name] = ServiceProcess(name, ports[name], env, workers=1).start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def tag(span: dict, key: str):
    return next((t["value"] for t in span["tags"] if t["key"] == key), None)


def parent_of(span: dict) -> str | None:
    return next((r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"), None)


def upload_spans_complete(spans: list[dict]) -> bool:
    def has(service: str, **tags) -> bool:
        return any(
            s["serviceName"] == service and all(tag(s, k) == v for k, v in tags.items()) for s in spans
        )

    return (
        has("api", **{"span.kind": "server", "http.route": "/api/v1/images/upload"})
        and has("auth", **{"span.kind": "server", "http.route": "/verify"})
        and has("images", **{"span.kind": "server", "http.route": "/upload"})
        and has("images", **{"db.system": "postgresql"})
        and has("images", **{"rpc.service": "S3", "rpc.method": "PutObject"})
    )


@pytest.mark.integration
def test_an_upload_through_the_gateway_is_one_trace_in_jaeger_with_database_s3_and_outgoing_calls(
    traced_services, jaeger
):
    api = f"{traced_services['api'].url}/api/v1"
    user, password = f"t{uuid.uuid4().hex[:10]}", "correct horse battery staple"
    assert requests.post(f"{api}/auth/register", json={"username": user, "password": password}, timeout=10).ok
    # A token the gateway has never seen, so it asks auth to verify it within the upload.
    token = requests.post(
        f"{api}/auth/login", json={"username": user, "password": password}, timeout=10
    ).json()["access_token"]
    request_id = f"jaeger-{uuid.uuid4().hex}"
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)

    upload = requests.post(
        f"{api}/images/upload",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Request-ID": request_id,
            "traceparent": f"00-{trace_id}-{client_span}-01",
        },
        files={"file": ("dot.png", png_bytes(), "image/png")},
        timeout=10,
    )
    assert upload.status_code == 201, upload.text

    spans = wait_until(
        lambda: upload_spans_complete(found := jaeger.trace(trace_id)) and found,
        timeout=30,
        message=f"the upload's spans from api, auth and images in Jaeger (trace {trace_id})",
    )
    by_id = {span["spanID"]: span for span in spans}
    assert {span["traceID"] for span in spans} == {trace_id}
    servers = {
        span["serviceName"]: span
        for span in spans
        if tag(span, "span.kind") == "server" and tag(span, "request.id") == request_id
    }
    assert set(servers) == {"api", "auth", "images"}
    # The client's span is the gateway's parent; auth and images continue the gateway's
    # outgoing HTTP spans, which requests' instrumentation recorded and put in traceparent.
    assert parent_of(servers["api"]) == client_span
    for callee in ("auth", "images"):
        caller = by_id[parent_of(servers[callee])]
        assert caller["serviceName"] == "api"
        assert tag(caller, "span.kind") == "client"
        assert parent_of(caller) == servers["api"]["spanID"]
    # The database and S3 calls hang under images' request.
    images_ids = {span["spanID"] for span in spans if span["serviceName"] == "images"}
    for backend in ("db.system", "rpc.service"):
        calls = [span for span in spans if span["serviceName"] == "images" and tag(span, backend)]
        assert calls and all(parent_of(span) in images_ids for span in calls), backend
    # The logs carry the same trace id, so a log line leads to its trace and back.
    for name, service in traced_services.items():
        line = wait_until(lambda service=service: access_line(service, request_id), timeout=10, message=name)
        assert line["trace_id"] == trace_id, name
