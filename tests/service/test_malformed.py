"""A few hundred malformed requests (random JSON shapes, wrong types, huge ids, bad UTF-8, unknown paths and
methods, oversized bodies): each gets a 4xx JSON error naming what was wrong, and the service keeps answering."""

from __future__ import annotations

import random
import urllib.parse
from typing import Any

from .conftest import Client

PATHS = ["/api/workflows", "/api/workflows/1/retry", "/api/workflows/1/abort", "/api/workflows/1/pause",
         "/api/workflows/1/resume", "/api/jobs/1/retry", "/api/jobs/1/cancel", "/api/dead-letters/redrive",
         "/api/prune", "/api/sessions"]
ODD_IDS = ["abc", "-1", "1.5", "9" * 30, "0x10", "%00", "%FF%FE", "1e9", "%D9%A1%D9%A2", "", "%2F", "true", "null"]
ODD_VALUES: list[Any] = [None, True, 1, -1, 2**70, 1.5, "", "x" * 300, [], [1, "a"], {}, {"a": {"b": []}}, "ü\u0000"]
QUERY_KEYS = ["offset", "limit", "status", "after", "before", "identifier"]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(ODD_VALUES)
    if kind == 1:
        return rng.randint(-(2**64), 2**64)
    if kind == 2:
        return "".join(rng.choice("ab\u00e9\u20ac\"\\{}") for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.random() * 1e308
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["identifier", "parameters", "step_id", "queue", "dry_run", "older_than", "session", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def assert_client_error(answer: Any, what: str) -> None:
    assert 400 <= answer.status < 500, f"{what}: {answer.status} {answer.body}"
    assert isinstance(answer.body, dict) and set(answer.body["error"]) >= {"status", "message"}, what
    assert "Traceback" not in str(answer.body), what


def test_random_bodies(client: Client) -> None:
    rng = random.Random(11)
    statuses = set()
    for index in range(200):
        path = rng.choice(PATHS).replace("/1/", f"/{rng.choice(['1', '424242'])}/")
        body = random_json(rng)
        if isinstance(body, dict) and "identifier" in body and body["identifier"] == "quick":
            continue  # a valid start would be a 201
        answer = client.post(path, body)
        if answer.status < 400:  # some random shapes are valid commands (e.g. a redrive dry run): fine
            assert answer.status in (200, 201), (path, body, answer.body)
            continue
        assert_client_error(answer, f"#{index} POST {path} {body!r}")
        statuses.add(answer.status)
    assert {400, 404} <= statuses


def test_raw_bodies(client: Client) -> None:
    raws = [b"{", b"\xff\xfe\x00", b"[]", b"null", b"1", b"\"x\"", b"{\"identifier\": \"\xc3\x28\"}",
            b"[" * 5000, b"{\"a\":" * 3000, b"   ", b"\x00" * 10,
            "{\"identifier\": \"\ud800\"}".encode("utf-8", "surrogatepass"),
            # JSON escapes of lone surrogates parse, but would crash whoever writes them to a file or a queue
            b'{"identifier": "failing_demo", "parameters": {"marker": "\\ud800"}}',
            b'{"older_than": "1d\\udfff", "queue": "\\udc00", "session": {"password": "\\ud83d"}}']
    for path in PATHS:
        for raw in raws:
            if not raw.strip() and path == "/api/dead-letters/redrive":
                continue  # an empty body is a valid redrive (every queue, for real)
            answer = client.call("POST", path, raw=raw)
            assert_client_error(answer, f"POST {path} {raw[:20]!r}")
    huge = client.call("POST", "/api/workflows", raw=b"{\"identifier\": \"" + b"x" * 200_000 + b"\"}")
    assert huge.status == 413 and huge.body["error"]["status"] == 413
    assert client.get("/api/health").body["connection"] == "connected"  # the backend's thread is alive


def test_odd_paths_and_queries(client: Client) -> None:
    rng = random.Random(7)
    templates = ["/api/workflows/{}", "/api/jobs/{}", "/api/workflows/{}/steps/1/jobs", "/api/workflows/1/steps/{}/jobs",
                 "/api/jobs/{}/retry", "/api/workflows/{}/abort", "/api/definitions/{}", "/api/credentials/{}"]
    count = 0
    for template in templates:
        for odd in ODD_IDS:
            method = "POST" if template.endswith(("retry", "abort")) else "GET"
            answer = client.call(method, template.format(odd))
            assert_client_error(answer, f"{method} {template.format(odd)}")
            count += 1
    for _ in range(100):
        key = rng.choice(QUERY_KEYS)
        value = rng.choice(ODD_IDS + ["-5", "100001", "queued\u00e9"])
        base = rng.choice(["/api/workflows", "/api/workflows/1/steps/1/jobs", "/api/dead-letters"])
        answer = client.get(f"{base}?{key}={urllib.parse.quote(value, safe='%')}")
        if answer.status < 400:
            continue  # e.g. identifier=anything is a valid filter, offset beyond the end an empty page
        assert_client_error(answer, f"GET {base}?{key}={value}")
        count += 1
    for method, path in [("PUT", "/api/workflows"), ("PATCH", "/api/jobs/1"), ("DELETE", "/api/health"),
                         ("GET", "/api/nothing/here"), ("GET", "/"), ("POST", "/api/health"),
                         ("GET", "/api/workflows/1/steps"), ("GET", "/api/%ZZ")]:
        answer = client.call(method, path)
        assert_client_error(answer, f"{method} {path}")
        count += 1
    assert count > 150
    health = client.get("/api/health")
    assert health.status == 200 and health.body["connection"] == "connected"  # still answering
