"""The real particle-cli (3.43.1, from npm) and its particle-api-js against a real `logic serve`.

`.ci/run` installs them into LOGIC_PARTICLE_CLI_DIR (a cache folder). Each test gives the CLI
its own HOME, so `particle config set apiUrl/access_token` writes a private config file.
The CLI prints its errors on stdout and exits 1; it is never interactive here (no TTY), so
commands that would ask use the flags that skip the question.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest

from tests.e2e.conftest import poll

CLI_DIR = Path(os.environ.get("LOGIC_PARTICLE_CLI_DIR", Path.home() / ".cache" / "logic-runtime" / "particle-cli"))
PARTICLE = CLI_DIR / "node_modules" / ".bin" / "particle"
VALUE = "particle-Value-93b1e7c2"
NEW_VALUE = "particle-Value-2-5d0a44"

READER = "def main(secrets):\n    return len(secrets.API_KEY)\n"
FUNCTION = textwrap.dedent(
    """\
    import logic


    def main(event):
        logic.log.info("got", event.name, event.data)
        return event.data
    """
)


@pytest.fixture(scope="module")
def particle_bin():
    if not PARTICLE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PARTICLE} is missing: .ci/run installs particle-cli@3.43.1 there")
        pytest.skip(f"particle-cli is not installed in {CLI_DIR} (see .ci/run)")
    return PARTICLE


@pytest.fixture
def particle(particle_bin, make_server, tmp_path):
    """particle(*args) -> CompletedProcess, configured for a fresh server (server.particle_server)."""
    server = make_server()
    assert server.cli("orgs", "create", "acme").returncode == 0
    server.start()
    home = tmp_path / "particle-home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "PARTICLE_DISABLE_UPDATE": "1"}
    work = tmp_path / "work"  # no local .logic.json here: get/enable/disable never ask to overwrite
    work.mkdir()

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(particle_bin), *args, "-q"], env=env, cwd=work, capture_output=True, text=True, timeout=timeout
        )

    assert run("config", "set", "apiUrl", server.url).returncode == 0
    assert run("config", "set", "access_token", server.token).returncode == 0
    run.server = server  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    run.work = work  # type: ignore[attr-defined]
    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("org", [None, "acme"])
def test_secrets_create_list_get_update_remove(particle, org):
    server = particle.server
    where = ["--org", org] if org else []
    base = f"/v1/orgs/{org}" if org else "/v1"

    out = ok(particle("secrets", "create", "--name", "API_KEY", "--value", VALUE, *where))
    assert "Secret API_KEY created successfully." in out
    listed = json.loads(ok(particle("secrets", "list", "--json", *where)))
    assert [(s["name"], s["usageCount"]) for s in listed] == [("API_KEY", 0)]
    got = ok(particle("secrets", "get", "--name", "API_KEY", *where))
    assert "API_KEY" in got and "Last accessed at: Never accessed" in got

    # Used by a function: list counts it, get links it by id; the run reads the new value.
    with server.client() as api:
        fn = api.post(
            f"{base}/logic/functions",
            json={
                "name": "reader",
                "secrets": ["API_KEY"],
                "source": "def main(secrets):\n    return len(secrets.API_KEY)\n",
            },
        ).json()
    out = ok(particle("secrets", "update", "--name", "API_KEY", "--value", NEW_VALUE, *where))
    assert "Secret API_KEY updated successfully." in out and fn["id"] in out
    assert json.loads(ok(particle("secrets", "list", "--json", *where)))[0]["usageCount"] == 1
    with server.client() as api:
        run = api.post(f"{base}/logic/execute", json={"secrets": ["API_KEY"], "source": fn["source"]}).json()
        assert run["result"] == len(NEW_VALUE)
        # A used secret is not removed: the CLI prints our message (Particle's error_description).
        refused = particle("secrets", "remove", "--name", "API_KEY", *where)
        assert refused.returncode == 1 and "in use" in refused.stdout
        assert api.delete(f"{base}/logic/functions/{fn['id']}").status_code == 204

    assert "Secret API_KEY removed successfully." in ok(particle("secrets", "remove", "--name", "API_KEY", *where))
    with server.client() as api:
        assert api.get(f"{base}/secrets").json()["secrets"] == []
    # The other owner saw none of it.
    other = ok(particle("secrets", "list", "--json", *(["--org", "acme"] if not org else [])))
    assert other.strip() in ("", "[]")


def test_secret_errors_are_clear_and_change_nothing(particle):
    bad = particle("secrets", "create", "--name", "API_KEY", "--value", "x" * (64 * 1024 + 1))
    assert bad.returncode == 1 and "the limit is 65536 bytes" in bad.stdout and "x" * 100 not in bad.stdout
    missing = particle("secrets", "get", "--name", "NOPE")
    assert missing.returncode == 1 and "NOPE" in missing.stdout
    foreign = particle("secrets", "list", "--org", "nobodys")
    assert foreign.returncode == 1 and "nobodys" in foreign.stdout
    with particle.server.client() as api:
        assert api.get("/v1/secrets").json()["secrets"] == []


def test_publish_reaches_a_function_and_subscribe_sees_only_its_prefix(particle):
    server = particle.server
    with server.client() as api:
        fn = api.post(
            "/v1/logic/functions",
            json={"name": "on-temp", "source": FUNCTION, "triggers": [{"type": "event", "event_name": "temp"}]},
        ).json()
    cmd = [str(PARTICLE), "subscribe", "te", "--until", "DONE", "-q"]
    with subprocess.Popen(
        cmd, env=particle.env, cwd=particle.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as sub:
        lines: list[dict] = []
        reader = threading.Thread(
            target=lambda: [lines.append(json.loads(x)) for x in sub.stdout if x.startswith("{")], daemon=True
        )
        reader.start()

        def listening() -> bool:  # a stream starts at connection: warm up until one event gets through
            ok(particle("publish", "te-warm", "w"))
            return bool(lines)

        poll(listening, timeout=20, interval=0.3)
        ok(particle("publish", "other", "ignored"))
        ok(particle("publish", "temp", "25.5"))
        ok(particle("publish", "temp2", '{"a":1}'))
        ok(particle("publish", "temp", "DONE"))
        sub.wait(timeout=30)
        reader.join(timeout=10)
    assert sub.returncode == 0, sub.stderr.read() if sub.stderr else ""
    seen = [(e["name"], e["data"]) for e in lines if e["name"] != "te-warm"]
    assert seen == [("temp", "25.5"), ("temp2", '{"a":1}'), ("temp", "DONE")]
    assert all(e["coreid"] == "api" and e["ttl"] == 60 and e["published_at"] for e in lines)
    with server.client() as api:
        runs = poll(lambda: len(api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"]) == 2, timeout=15)
        results = sorted(r["result"] for r in api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"])
    assert runs and results == ["25.5", "DONE"]


@pytest.mark.parametrize("org", [None, "acme"])
def test_logic_function_list_get_disable_enable_logs_delete(particle, org):
    server = particle.server
    where = ["--org", org] if org else []
    base = f"/v1/orgs/{org}" if org else "/v1"
    with server.client() as api:
        fn = api.post(
            f"{base}/logic/functions",
            json={
                "name": "hello",
                "description": "says hi",
                "source": FUNCTION,
                "triggers": [{"type": "event", "event_name": "temp"}],
            },
        ).json()

    listing = ok(particle("logic-function", "list", *where))
    assert "- hello (enabled)" in listing and f"- ID: {fn['id']}" in listing and "Event based trigger" in listing

    out = ok(particle("logic-function", "get", "--name", "hello", *where))
    assert "hello.logic.json" in out
    downloaded = json.loads((particle.work / "hello.logic.json").read_text())["logic_function"]
    assert downloaded["id"] == fn["id"] and downloaded["logic_triggers"][0]["event_name"] == "temp"
    assert (particle.work / "hello.js").read_text() == FUNCTION  # our Python, in the file the CLI names .js
    for name in ("hello.logic.json", "hello.js"):
        (particle.work / name).unlink()  # else enable/disable ask to overwrite them

    assert f"Logic Function hello ({fn['id']}) is now disabled." in ok(
        particle("logic-function", "disable", "--name", "hello", *where)
    )
    with server.client() as api:
        now = api.get(f"{base}/logic/functions/{fn['id']}").json()
        assert now["enabled"] is False and now["version"] == 1  # no new version for a switch
    assert "- hello (disabled)" in ok(particle("logic-function", "list", *where))
    assert "is now enabled." in ok(particle("logic-function", "enable", "--id", fn["id"], *where))

    assert "console" in ok(particle("logic-function", "logs", "--name", "hello", *where))
    assert "has been successfully deleted" in ok(
        particle("logic-function", "delete", "--name", "hello", "--force", *where)
    )
    with server.client() as api:
        assert api.get(f"{base}/logic/functions").json()["logic_functions"] == []
    missing = particle("logic-function", "disable", "--name", "hello", *where)
    assert missing.returncode == 1 and "not found" in missing.stdout


def test_particle_api_js_calls(particle, tmp_path):
    server = particle.server
    with server.client() as api:
        fn = api.post(
            "/v1/logic/functions",
            json={
                "name": "js-reader",
                "source": FUNCTION,
                "triggers": [{"type": "event", "event_name": "api-js/hello"}],
            },
        ).json()
    script = Path(__file__).with_name("particle_api_calls.js")
    env = {
        **particle.env,
        "API_JS": str(CLI_DIR / "node_modules" / "particle-api-js"),
        "BASE_URL": server.url,
        "TOKEN": server.token,
    }

    # The run triggered by the event may still be on its way when listLogicRuns asks: retry.
    def attempt():
        done = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=60)
        return done if done.returncode == 0 else None

    with server.client() as api:
        api.post("/v1/events", json={"name": "api-js/hello", "data": "warm-up"})
        poll(lambda: api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"], timeout=15)
    done = poll(attempt, timeout=60, interval=1)
    out = json.loads(done.stdout)
    assert out["names"] == ["js-reader"] and out["code"] == FUNCTION
    assert out["event"]["name"] == "api-js/hello" and out["event"]["data"] == "from-node"
    assert out["runs"] >= 1 and out["missing"] == 404
    assert any(line["level"] == "info" and "got api-js/hello" in line["message"] for line in out["logs"])
