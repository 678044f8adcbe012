"""What every service app does before its own code runs: ids, errors, logs, health."""

from __future__ import annotations

import io
import json
import logging

import pytest
from werkzeug.test import Client

from servicekit.app import create_service_app
from servicekit.config import ServiceSettings, load
from servicekit.health import add_check
from servicekit.metrics import MetricsBusy, metrics_app


@pytest.fixture
def app():
    settings = load(ServiceSettings, {"DATABASE_URL": "postgresql://unused"})
    app = create_service_app("demo", settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/hello")
    def hello():
        logging.getLogger("demo").info("saying hello", extra={"who": "world"})
        return {"hello": "world"}

    return app


def test_a_request_id_is_made_when_none_is_given(app):
    response = app.test_client().get("/hello")
    assert len(response.headers["X-Request-ID"]) == 32


def test_a_safe_incoming_request_id_is_kept(app):
    response = app.test_client().get("/hello", headers={"X-Request-ID": "abc-123.x:y"})
    assert response.headers["X-Request-ID"] == "abc-123.x:y"


@pytest.mark.parametrize("unsafe", ["a" * 129, "tab\there", "<script>", "spaces here", 'quote"d'])
def test_an_unsafe_incoming_request_id_is_replaced(app, unsafe):
    response = app.test_client().get("/hello", headers={"X-Request-ID": unsafe})
    assert response.headers["X-Request-ID"] != unsafe
    assert len(response.headers["X-Request-ID"]) == 32


def test_an_unexpected_error_is_a_500_problem_without_internals(app, caplog):
    response = app.test_client().get("/boom")

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # but the log has it


def test_log_lines_are_json_with_service_and_request_id(app, capsys):
    app.test_client().get("/hello", headers={"X-Request-ID": "req-42"})

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "saying hello" in line]
    assert lines == [
        {
            **lines[0],
            "service": "demo",
            "request_id": "req-42",
            "route": "/hello",
            "who": "world",
            "message": "saying hello",
            "level": "info",
        }
    ]


def test_health_reports_dependencies_and_readiness_fails_when_one_is_down(app):
    def broken():
        raise ConnectionError("refused")

    add_check(app, "database", lambda: None)
    add_check(app, "object_store", broken)
    client = app.test_client()

    health = client.get("/health")
    ready = client.get("/ready")

    assert health.status_code == 200
    assert health.get_json()["checks"]["object_store"]["status"] == "unavailable"
    assert ready.status_code == 503
    assert ready.mimetype == "application/problem+json"
    assert ready.get_json()["checks"]["database"]["status"] == "ok"
    assert client.get("/live").status_code == 200


def test_incoming_traceparent_keeps_its_trace_id(app):
    from servicekit import context

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with app.test_request_context("/hello", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}):
        app.preprocess_request()
        outbound = context.outbound_headers()
    assert outbound["traceparent"].startswith(f"00-{trace_id}-")
    assert not outbound["traceparent"].startswith(f"00-{trace_id}-00f067aa0ba902b7")


def test_metrics_are_exposed_in_prometheus_text_format_on_the_metrics_port(app):
    app.test_client().get("/hello")

    metrics = Client(metrics_app).get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    text = metrics.get_data(as_text=True)
    assert 'flask_http_request_total{method="GET",status="200"}' in text
    assert 'flask_http_request_duration_seconds_count{method="GET",route="/hello",status="200"}' in text


def test_the_app_port_does_not_serve_metrics(app):
    response = app.test_client().get("/metrics")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("path", ["/", "/health", "/ready", "/live", "/metrics/x"])
def test_the_metrics_port_serves_nothing_but_metrics(path):
    response = Client(metrics_app).get(path)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_the_metrics_port_refuses_writes():
    assert Client(metrics_app).post("/metrics").status_code == 405


def test_a_scrape_that_meets_a_half_written_worker_file_is_a_503_not_a_traceback(monkeypatch):
    def busy():
        raise MetricsBusy("unpack requires a buffer of 8 bytes")

    monkeypatch.setattr("servicekit.metrics.exposition", busy)

    response = Client(metrics_app).get("/metrics")

    assert response.status_code == 503
    assert response.json["type"].endswith("/metrics-busy")
    assert "unpack" not in response.get_data(as_text=True)


def test_unknown_http_methods_are_counted_as_other_so_they_cannot_mint_series(app, scrape_metrics):
    client = app.test_client()
    for method in ("X0ZZ", "X1ZZ", "BREW"):
        client.open("/hello", method=method)

    metrics = scrape_metrics()

    assert "X0ZZ" not in metrics
    assert 'flask_http_request_total{method="other",status="405"} 3.0' in metrics
    by_route = "flask_http_request_duration_seconds_count"
    assert f'{by_route}{{method="other",route="unmatched",status="405"}} 3.0' in metrics


def test_requests_are_labelled_by_route_template_and_every_unmatched_path_is_one_value(app, scrape_metrics):
    @app.get("/greet/<name>")
    def greet(name: str):
        return {"hello": name}

    client = app.test_client()
    client.get("/greet/alice")
    client.get("/greet/bob")
    client.get("/no/such/page")
    client.get("/nor/this/one")

    metrics = scrape_metrics()

    by_route = "flask_http_request_duration_seconds_count"
    assert f'{by_route}{{method="GET",route="/greet/<name>",status="200"}} 2.0' in metrics
    assert f'{by_route}{{method="GET",route="unmatched",status="404"}} 2.0' in metrics
    assert "alice" not in metrics and "/no/such/page" not in metrics


def test_an_unhandled_error_is_counted_once_as_a_500(app, scrape_metrics):
    app.test_client().get("/boom")

    metrics = scrape_metrics()

    assert 'flask_http_request_total{method="GET",status="500"} 1.0' in metrics
    assert 'flask_http_request_duration_seconds_count{method="GET",route="/boom",status="500"} 1.0' in metrics


def test_a_response_hook_that_fails_is_counted_once_as_a_500(app, scrape_metrics):
    @app.after_request
    def broken(response):
        raise RuntimeError("hook failed")

    response = app.test_client().get("/hello")

    assert response.status_code == 500
    metrics = scrape_metrics()
    assert 'flask_http_request_total{method="GET",status="500"} 1.0' in metrics
    assert 'flask_http_request_total{method="GET",status="200"}' not in metrics
    assert "http_requests_in_flight 0.0" in metrics


def test_an_error_no_handler_answers_is_counted_as_a_500_and_an_exception(app, scrape_metrics):
    @app.get("/lookup")
    def lookup():
        raise KeyError("missing")

    @app.errorhandler(KeyError)
    def broken_handler(error):
        raise RuntimeError("the handler failed too")

    app.testing = True  # what no handler answered reaches the server

    with pytest.raises(RuntimeError):
        app.test_client().get("/lookup")

    metrics = scrape_metrics()
    assert 'flask_http_request_total{method="GET",status="500"} 1.0' in metrics
    assert 'flask_http_request_exceptions_total{method="GET",status="500"} 1.0' in metrics
    by_route = "flask_http_request_duration_seconds_count"
    assert f'{by_route}{{method="GET",route="/lookup",status="500"}} 1.0' in metrics
    assert "http_requests_in_flight 0.0" in metrics


def test_no_request_metric_label_is_one_the_prometheus_operator_adds_to_every_target(app, scrape_metrics):
    from prometheus_client.parser import text_string_to_metric_families

    app.test_client().get("/hello")

    labels = {
        name
        for family in text_string_to_metric_families(scrape_metrics())
        if family.name.startswith("flask_http_request")
        for sample in family.samples
        for name in sample.labels
    }

    assert labels == {"method", "route", "status", "le"}


def test_integer_route_parameters_take_ascii_digits_only(app):
    @app.get("/things/<int:thing_id>")
    def thing(thing_id: int):
        return {"id": thing_id}

    client = app.test_client()

    assert client.get("/things/12").get_json() == {"id": 12}
    assert client.get("/things/%D9%A1").status_code == 404  # ARABIC-INDIC DIGIT ONE


def test_a_chunked_json_body_over_the_limit_is_413_not_malformed(app):
    from servicekit.validation import json_object

    @app.post("/echo")
    def echo():
        return json_object(required={"text": str})

    body = json.dumps({"text": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}).encode()
    response = app.test_client().post(
        "/echo",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_json_responses_are_compact_in_key_order_utf8_and_end_with_a_newline(app):
    @app.get("/page")
    def page():
        return {"zeta": 1, "alpha": [1.5, None, True], "text": "café ☕"}

    response = app.test_client().get("/page")

    assert response.mimetype == "application/json"
    assert response.get_data() == '{"zeta":1,"alpha":[1.5,null,true],"text":"café ☕"}\n'.encode()


def test_json_responses_orjson_would_write_differently_are_written_as_flask_writes_them(app):
    import datetime
    import decimal

    values = {
        "datetime": datetime.datetime(2026, 11, 30, 6, 0, tzinfo=datetime.UTC),
        "decimal": decimal.Decimal("1.10"),
        "big": 2**70,
        "surrogate": "\ud800",
    }
    for name, value in values.items():
        app.add_url_rule(f"/{name}", name, lambda value=value: {"value": value})

    client = app.test_client()
    for name, value in values.items():
        with app.app_context():
            expected = app.json.dumps({"value": value}, separators=(",", ":")) + "\n"
        assert client.get(f"/{name}").get_data(as_text=True) == expected, name
    assert client.get("/datetime").json == {"value": "Mon, 30 Nov 2026 06:00:00 GMT"}


def test_a_request_and_its_trace_get_distinct_ids_of_their_standard_lengths(app):
    response = app.test_client().get("/hello")
    with app.test_request_context("/hello"):
        app.preprocess_request()
        from flask import g

        ids = (g.request_id, g.trace_id, g.span_id)

    assert len(response.headers["X-Request-ID"]) == 32
    assert [len(value) for value in ids] == [32, 32, 16]
    assert len(set(ids)) == 3
    assert all(set(value) <= set("0123456789abcdef") for value in ids)
