"""The change audit across processes: a real `logic serve` records API changes while the CLI
rotates both keys beside it; one chain holds them all, and `logic audit verify` proves it."""

from __future__ import annotations

import json

SECRET = "e2e-change-audit-value-Hq27"


def test_one_chain_across_the_server_and_the_cli(make_server):
    server = make_server()
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
        assert server.cli("keys", "rotate").returncode == 0
        assert server.cli("keys", "rotate", "--master").returncode == 0
        # The server learns of the re-wrapped ring on its own, and goes on recording.
        assert api.put("/v1/secrets/API_KEY", json={"value": SECRET + "-2"}).status_code == 200
        assert api.put("/v1/env/RETRY", json={"value": "5"}).status_code == 200
        listed = api.get("/v1/audit/changes").json()["changes"]
        verified = api.get("/v1/audit/verify").json()
    token_id = json.loads(server.cli("tokens", "list", "--json").stdout)[0]["id"]
    cli_rows = json.loads(server.cli("audit", "--changes", "--json").stdout)
    assert [(r["action"], r["via"]) for r in cli_rows] == [
        ("env.set", f"token:{token_id}"),
        ("secret.update", f"token:{token_id}"),
        ("keys.rotate_master", "cli"),
        ("keys.rotate", "cli"),
        ("secret.create", f"token:{token_id}"),
        ("init", "cli"),
    ]
    assert [r["id"] for r in listed] == [r["id"] for r in cli_rows]
    assert verified["ok"] and verified["rows"] == 6
    result = server.cli("audit", "verify")
    assert result.returncode == 0 and result.stdout.startswith("OK: 6 change(s) verified.")
    assert SECRET not in server.output() + result.stdout + json.dumps(cli_rows)
    server.stop()
