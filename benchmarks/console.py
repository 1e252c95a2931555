"""Workload 8: console pages with a big owner, server time per page (the ASGI app in-process).

One owner with 1,000 secrets and 100 functions (10 stored runs each). Each page is timed
beside the JSON API answer that lists the same rows (`GET /v1/secrets`, `/v1/logic/functions`),
so the ratio is what rendering the HTML costs over serving the data. Target: each page well
under 100 ms of server time.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from .harness import Peer, Report, at_most, interleave, stats

SECRETS = 1_000
FUNCTIONS = 100
RUNS_EACH = 10


def _world(home: Path):
    from fastapi.testclient import TestClient

    from runtime.http.app import create_app
    from runtime.manifest import files_from_json
    from runtime.service import Service
    from store import Settings, Store

    settings = Settings(home=home)
    store, init = Store.initialize(settings)
    service = Service(store)
    admin = service.actor()
    for i in range(SECRETS):
        service.create_secret(admin, f"SECRET_{i:04d}", f"value-{i}-{uuid.uuid4().hex}")
    for i in range(FUNCTIONS):
        fn = service.deploy_function(
            admin,
            files_from_json(
                {
                    "name": f"fn-{i:03d}",
                    "secrets": [f"SECRET_{i:04d}"],
                    "triggers": [{"type": "event", "event_name": f"ev-{i}"}],
                    "source": f"def main(event, secrets):\n    return len(secrets.SECRET_{i:04d})\n",
                }
            ),
        )
        for n in range(RUNS_EACH):
            store.functions.add_run(
                {
                    "id": uuid.uuid4().hex,
                    "function_id": fn.id,
                    "function_version": 1,
                    "status": "success",
                    "started_at": f"2026-12-01T00:00:{n:02d}.000000Z",
                    "finished_at": f"2026-12-01T00:00:{n:02d}.001000Z",
                    "duration_ms": 1.0,
                    "trigger": {"type": "event"},
                    "logs": [],
                    "result": n,
                    "error": None,
                    "secrets_accessed": [],
                    "events_published": [],
                }
            )
    client = TestClient(create_app(service), base_url="http://127.0.0.1:8080")
    signed = client.post("/sign-in", data={"token": init.token}, headers={"Origin": "http://127.0.0.1:8080"})
    assert signed.status_code == 200 and re.search("Cloud secrets", signed.text)
    api = {"Authorization": f"Bearer {init.token}"}
    return service, client, api


def _get(client, path: str, headers: dict | None = None):
    def op() -> None:
        response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code}")

    return op


def run(report: Report, quick: bool) -> None:
    section = report.section("console", "8. Console pages for an owner with 1,000 secrets and 100 functions")
    home = Path(tempfile.mkdtemp(prefix="bench-console-")) / "home"
    service = None
    try:
        service, client, api = _world(home)
        peers = [
            Peer("secrets_page", _get(client, "/secrets"), samples=5 if quick else 15),
            Peer("secrets_json", _get(client, "/v1/secrets", api), samples=5 if quick else 15),
            Peer("logic_page", _get(client, "/logic"), samples=5 if quick else 15),
            Peer("functions_json", _get(client, "/v1/logic/functions", api), samples=5 if quick else 15),
        ]
        rounds = interleave(peers, 2 if quick else 5)
        labels = {
            "secrets_page": "GET /secrets (HTML, 1,000 rows with menus)",
            "secrets_json": "GET /v1/secrets (the same rows as JSON)",
            "logic_page": "GET /logic (HTML, 100 functions with last run and today's counts)",
            "functions_json": "GET /v1/logic/functions (JSON)",
        }
        for name, samples in rounds.items():
            target = at_most(100.0, "p50 <= 100 ms") if name.endswith("_page") else None
            section.figure(name, "ms", stats(samples, 1e3), label=labels[name], target=target)
        section.ratio(
            "secrets_page_over_json",
            section.value("secrets_page"),
            section.value("secrets_json"),
            meaning="rendering the secrets page / serving the same rows as JSON",
        )
        section.ratio(
            "logic_page_over_json",
            section.value("logic_page"),
            section.value("functions_json"),
            meaning="the Logic page (with runs per function) / the functions as JSON",
        )
        section.note("server time: the ASGI app in-process (TestClient), no network; includes the session check")
    finally:
        if service is not None:
            service.close()
        shutil.rmtree(home.parent, ignore_errors=True)
