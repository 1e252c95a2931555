"""Red team: today's secret lifecycle features, attacked as one tenant against another,
for leaks through every output, and against the change audit's chain.

Secret versions and restore, bulk import, the change audit (`logic audit verify`),
`logic.mask` and run replay, through the service, the API, the CLI and the console
(starlette TestClient), over real SQLite in tmp_path and, for runs, the real worker
pool. Each test names the hole it looks for; the ones marked "hole:" failed before the
fix beside them.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.manifest import files_from_json
from runtime.sandbox.masks import mask_problem
from runtime.service import Service
from store import Settings, Store
from store.errors import InvalidInput, LogicError, NotFound, PermissionDenied
from store.secrets import ImportRefused
from tests.conftest import BACKENDS
from tests.security.test_secret_at_rest import leaks
from tests.support import runtime_service

BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}
ALICE_VALUE = "alice-lifecycle-v4lue-7c1e9b03"
ALICE_OLD = "alice-lifecycle-0ld-v4lue-52aa"
BOB_VALUE = "bob-lifecycle-v4lue-d00d4f11"
# A line of a certificate that looks like NAME= (upper-case base64 ending in padding).
CERT_LINE = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY="
CERT_NAME = CERT_LINE.rstrip("=")
PROBLEMS_MAX = 100  # runtime/secrets_import.py: problems an import lists before it stops reading


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's store-backed tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


def _wipe(store: Store, *statements: str) -> None:
    """SQL on the database behind the store's back, as an intruder with the database would
    (the append-only trigger guards updates only: the deletes need no dropping on PostgreSQL)."""
    with store.db.transaction() as conn:
        if store.db.dialect == "sqlite":
            conn.execute("DROP TRIGGER IF EXISTS changes_append_only")
        for sql in statements:
            conn.execute(sql)


# the change audit's chain -------------------------------------------------------------


def test_the_whole_chain_wiped_but_its_key_is_found(store):
    """hole: rows, head and checkpoints deleted (the key left) verified as an empty chain."""
    service = Service(store)
    admin = service.actor()
    service.create_secret(admin, "A_KEY", ALICE_VALUE)
    assert store.changes.verify().ok
    _wipe(store, "DELETE FROM changes", "DELETE FROM change_head", "DELETE FROM change_checkpoints")
    result = store.changes.verify()
    assert not result.ok and "head record is missing" in (result.problem or ""), result
    assert result.to_json()["head"] is None  # nothing to keep as a head from a broken chain


def test_the_chain_and_its_key_wiped_fail_against_a_kept_head(store):
    """hole: with the key row deleted too, verify --head ID:MAC said ok (rows 0)."""
    service = Service(store)
    admin = service.actor()
    service.create_secret(admin, "A_KEY", ALICE_VALUE)
    kept = service.verify_changes(admin)
    head = f"{kept.head_id}:{kept.head_mac}"
    _wipe(
        store,
        "DELETE FROM changes",
        "DELETE FROM change_head",
        "DELETE FROM change_checkpoints",
        "DELETE FROM change_audit_key",
    )
    store.close()
    reopened = Store.open(store.settings)  # a fresh process: no key cached
    try:
        again = Service(reopened)
        assert not again.verify_changes(again.actor(), head).ok
        # A leftover checkpoint without its key is no empty audit either.
        _wipe(
            reopened,
            "INSERT INTO change_checkpoints (at, last_id, last_mac, rows_pruned, mac) VALUES ('x', 5, 'm', 5, 'm')",
        )
        assert not reopened.changes.verify().ok
    finally:
        reopened.close()


@pytest.mark.parametrize("head", ["\u00b2:" + "a" * 64, "\u0661:" + "a" * 64, "-1:" + "a" * 64, "1:" + "g" * 64])
def test_a_kept_head_in_odd_digits_is_a_clear_error(settings, head):
    """hole: "²" passes str.isdigit() but not int(): a 500 from /v1/audit/verify."""
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    try:
        with pytest.raises(InvalidInput, match="head: use ID:MAC"):
            service.verify_changes(service.actor(), head)
        with TestClient(create_app(service), headers={"Authorization": f"Bearer {init.token}"}) as client:
            answer = client.get("/v1/audit/verify", params={"head": head})
        assert answer.status_code in (400, 422), answer.text
        assert "error" in answer.json()
    finally:
        service.close()


def test_the_cli_says_so_for_an_odd_head_and_for_a_wiped_chain(cli, settings):
    assert cli("init").exit_code == 0
    odd = cli("audit", "verify", "--head", "\u00b2:" + "a" * 64)
    assert odd.exit_code == 1 and odd.output.strip().startswith("Error: head: use ID:MAC"), odd.output
    kept = json.loads(cli("audit", "verify", "--json").output)["head"]
    store = Store.open(settings)
    try:
        _wipe(store, "DELETE FROM changes", "DELETE FROM change_head")
    finally:
        store.close()
    assert cli("audit", "verify").exit_code == 1
    assert cli("audit", "verify", "--head", f"{kept['id']}:{kept['mac']}").exit_code == 1


@pytest.mark.parametrize("key", [[10**30], [-(10**30)], [2**63]])
def test_a_forged_cursor_with_a_huge_id_is_a_clear_error(settings, key):
    """hole: an id past SQLite's integers was an OverflowError in the driver: a 500."""
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()
    audit_cursor = base64.urlsafe_b64encode(json.dumps(["2026-01-01", *key]).encode()).decode()
    try:
        with TestClient(
            create_app(service), headers={"Authorization": f"Bearer {init.token}"}, raise_server_exceptions=False
        ) as client:
            for path, given in (("/v1/audit/changes", cursor), ("/v1/audit", audit_cursor)):
                answer = client.get(path, params={"cursor": given})
                assert answer.status_code == 422, (path, answer.status_code, answer.text)
                assert "not a cursor from this listing" in answer.json()["error"]
    finally:
        service.close()


def test_two_writers_on_one_file_keep_one_unbroken_chain(settings):
    """Two processes' stores append at once: ids without gaps, every MAC in its place."""
    Store.initialize(settings)[0].close()
    stores = [Store.open(settings), Store.open(settings)]
    errors: list[BaseException] = []

    def write(store: Store, tag: str) -> None:
        try:
            for n in range(40):
                store.changes.record(
                    at="2026-12-01T00:00:00.000000Z",
                    actor=tag,
                    via="cli",
                    owner=f"user:{tag}",
                    action="secret.update",
                    target_kind="secret",
                    target=f"KEY_{n}",
                    details={"version": n},
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, t)) for s, t in zip(stores, ("alice", "bob"), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        for store in stores:
            result = store.changes.verify()
            assert result.ok, result
        ids = [r[0] for r in stores[0].db.all("SELECT id FROM changes ORDER BY id")]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 81
    finally:
        for store in stores:
            store.close()


def test_another_owners_change_rows_stay_out_of_every_listing(settings):
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    admin = service.actor()
    alice = service.create_user(admin, "alice")
    bob = service.create_user(admin, "bob")
    service.create_org(alice, "acme")
    service.create_secret(alice, "ALICE_ONLY", ALICE_VALUE)
    service.create_secret(alice, "ORG_KEY", ALICE_VALUE, org="acme")
    bob_token = service.create_token(bob)
    try:
        assert not [c for c in service.list_changes(bob) if c.target in ("ALICE_ONLY", "ORG_KEY")]
        with pytest.raises(PermissionDenied):
            service.list_changes(bob, "acme")
        with pytest.raises(PermissionDenied):
            service.verify_changes(bob)
        with TestClient(create_app(service), headers={"Authorization": f"Bearer {bob_token}"}) as client:
            mine = client.get("/v1/audit/changes", params={"secret": "ALICE_ONLY"})
            assert mine.status_code == 200 and mine.json()["changes"] == []
            assert client.get("/v1/orgs/acme/audit/changes").status_code == 403
            assert client.get("/v1/orgs/..%2Facme/audit/changes").status_code in (403, 404)
            assert client.get("/v1/audit/verify").status_code == 403
            assert "ALICE_ONLY" not in client.get("/v1/audit/changes").text
    finally:
        service.close()


# secret versions, restore and import: another tenant -----------------------------------


@pytest.fixture
def tenants(settings: Settings):
    """alice (org acme), bob (no org), and an API client for each."""
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    admin = service.actor()
    alice = service.create_user(admin, "alice")
    bob = service.create_user(admin, "bob")
    service.create_org(alice, "acme")
    service.create_secret(alice, "API_KEY", ALICE_OLD)
    service.update_secret(alice, "API_KEY", ALICE_VALUE)
    service.create_secret(alice, "API_KEY", ALICE_OLD, org="acme")
    service.update_secret(alice, "API_KEY", ALICE_VALUE, org="acme")
    service.create_secret(bob, "API_KEY", BOB_VALUE)
    tokens = {"alice": service.create_token(alice), "bob": service.create_token(bob)}
    with TestClient(create_app(service)) as client:
        yield service, client, tokens, alice, bob
    service.close()


def _as(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _current(service: Service, owner: str, name: str = "API_KEY") -> str:
    return service.store.secrets.reveal(owner, name).reveal()


def test_bob_cannot_list_restore_or_import_into_alices_secrets(tenants):
    service, client, tokens, alice, bob = tenants
    bob_h = _as(tokens, "bob")
    # His own sandbox has a secret of the same name: his answers must be about his own.
    mine = client.get("/v1/secrets/API_KEY/versions", headers=bob_h).json()["versions"]
    assert [v["version"] for v in mine] == [1]
    for path in (
        "/v1/orgs/acme/secrets/API_KEY/versions",
        "/v1/orgs/acme/secrets/API_KEY/versions/1/restore",
        "/v1/orgs/ACME/secrets/API_KEY/versions/1/restore",
        "/v1/orgs/acme%2F..%2F/secrets/API_KEY/versions/1/restore",
    ):
        method = client.post if path.endswith("restore") else client.get
        answer = method(path, headers=bob_h)
        assert answer.status_code in (403, 404), (path, answer.status_code, answer.text)
        assert ALICE_VALUE not in answer.text and ALICE_OLD not in answer.text
    imported = client.post(
        "/v1/orgs/acme/secrets:import", json={"content": "API_KEY=bob-was-here-1234", "update": True}, headers=bob_h
    )
    assert imported.status_code == 403
    # Restoring his own version 1 is refused (it is current) and never touches alice's.
    assert client.post("/v1/secrets/API_KEY/versions/1/restore", headers=bob_h).status_code == 409
    assert _current(service, alice.owner) == ALICE_VALUE
    assert _current(service, "org:acme") == ALICE_VALUE
    assert _current(service, bob.owner) == BOB_VALUE
    with pytest.raises(PermissionDenied):
        service.restore_secret(bob, "API_KEY", 1, org="acme")
    with pytest.raises(NotFound):
        service.secret_versions(bob, "NOT_HIS")


@pytest.mark.parametrize(
    "version, statuses",
    [
        ("0", {422}),
        ("-1", {422}),
        ("1e0", {422}),
        ("99999999999999999999999999", {404}),
        ("9223372036854775808", {404}),
        ("1%2F..%2F2", {404, 422}),
        ("true", {422}),
    ],
)
def test_odd_version_numbers_change_nothing(tenants, version, statuses):
    service, client, tokens, alice, _bob = tenants
    before = service.secret_versions(alice, "API_KEY")
    answer = client.post(f"/v1/secrets/API_KEY/versions/{version}/restore", headers=_as(tokens, "alice"))
    assert answer.status_code in statuses, (version, answer.status_code, answer.text)
    assert "error" in answer.json()
    assert service.secret_versions(alice, "API_KEY") == before
    assert _current(service, alice.owner) == ALICE_VALUE


def test_a_refused_import_never_repeats_a_line_of_a_value(tenants):
    """hole: after a quote left open, a line of the value that looks like NAME= came back
    as "line 3: QUJDREVG...: secret value must not be empty" (CLI, API, console alike)."""
    service, client, tokens, alice, _bob = tenants
    service.create_secret(alice, "ZQ_TOKEN_PART", "already-here-1234")
    content = f'CERT="-----BEGIN KEY-----\nMIIBmixedCase\n{CERT_LINE}\nZQ_TOKEN_PART=x\nZQ_TOKEN_PART=y\n'
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(alice, content)
    text = refused.value.message + "\n".join(refused.value.issues)
    assert CERT_NAME not in text and "ZQ_TOKEN_PART" not in text, text
    assert any(p.startswith("line 3: ") for p in refused.value.issues)  # still said where
    answer = client.post("/v1/secrets:import", json={"content": content}, headers=_as(tokens, "alice"))
    assert answer.status_code == 422 and CERT_NAME not in answer.text and "ZQ_TOKEN_PART" not in answer.text
    # A readable file still names its entries (nothing to hide there).
    with pytest.raises(ImportRefused) as plain:
        service.import_secrets(alice, "GOOD_NAME=\nAPI_KEY=x\n")
    assert "GOOD_NAME" in plain.value.message and "API_KEY already exists" in plain.value.message


def test_a_flood_of_broken_lines_is_cut_short(tenants):
    """hole: 512 KiB of broken lines made 262,144 problems: ~5 s of parsing and a 14 MB
    answer for one request."""
    service, client, tokens, alice, _bob = tenants
    content = "a\n" * (service.settings.secret_import_max_bytes // 2)
    started = time.monotonic()
    answer = client.post("/v1/secrets:import", json={"content": content}, headers=_as(tokens, "alice"))
    elapsed = time.monotonic() - started
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert len(problems) <= PROBLEMS_MAX + 1 and "stopped after" in problems[-1]
    assert len(answer.content) < 64 * 1024 and elapsed < 2.0
    wrong_types = json.dumps({f"K_{i}": i for i in range(400)})
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(alice, wrong_types)
    assert len(refused.value.issues) <= PROBLEMS_MAX + 1
    assert service.store.secrets.names(alice.owner) == ["API_KEY"]  # nothing written


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfA_KEY=x\xff\n",  # BOM, then a byte that is no UTF-8
        b"A_KEY=ok\r\nB_KEY=\x00nul\r\n\x00=x\r\n",  # CRLF and NUL
        ("[" * 100_000 + "]" * 100_000).encode(),  # deep JSON
        b'{"A_KEY": "x", "A_KEY": "y"}',  # a duplicate key
        b'{"A_KEY": {"deep": ["' + ALICE_VALUE.encode() + b'"]}}',
        ("A_KEY=" + "v" * (70 * 1024) + "\n").encode(),  # a value over 64 KiB
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # binary
        ('{"<script>alert(1)</script>": "' + ALICE_VALUE + '"}').encode(),
    ],
)
def test_bad_imports_change_nothing_and_echo_no_value(tenants, content):
    service, client, tokens, alice, _bob = tenants
    before = service.store.secrets.names(alice.owner)
    with pytest.raises(LogicError) as refused:
        service.import_secrets(alice, content)
    message = str(refused.value) + "\n".join(getattr(refused.value, "issues", []))
    assert ALICE_VALUE not in message and "<script>" not in message and "vvvvvvvv" not in message
    assert service.store.secrets.names(alice.owner) == before
    assert _current(service, alice.owner) == ALICE_VALUE


# the console's new pages -----------------------------------------------------------------


@pytest.fixture
def console(settings: Settings):
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    admin = service.actor()
    service.create_secret(admin, "API_KEY", ALICE_OLD)
    service.update_secret(admin, "API_KEY", ALICE_VALUE)
    other = service.create_user(admin, "mallory")
    service.create_org(other, "evilcorp")
    service.create_secret(other, "THEIR_KEY", BOB_VALUE, org="evilcorp")
    service.update_secret(other, "THEIR_KEY", BOB_VALUE + "-2", org="evilcorp")
    with TestClient(create_app(service), base_url=BASE) as client:
        assert client.post("/sign-in", data={"token": init.token}, headers=SAME, follow_redirects=False).is_redirect
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/secrets").text).group(1)
        yield service, client, csrf
    service.close()


@pytest.mark.parametrize(
    "headers, with_csrf",
    [
        ({"Origin": "https://evil.example"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, True),
        (SAME, False),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, True),  # a sandboxed frame's POST
    ],
    ids=["foreign-origin", "cross-site", "no-csrf", "null-origin"],
)
def test_restore_import_and_replay_need_the_origin_and_the_csrf_token(console, headers, with_csrf):
    service, client, csrf = console
    admin = service.actor()
    fields = {"csrf": csrf} if with_csrf else {}
    attempts = [
        ("/secrets/API_KEY/versions/1/restore", {}),
        ("/secrets/import", {"content": "FORGED_KEY=forged-value-1234", "update": "1"}),
        ("/logic/any/runs/0123456789abcdef/replay", {}),
    ]
    for path, extra in attempts:
        answer = client.post(path, data={**fields, **extra}, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
    assert _current(service, admin.owner) == ALICE_VALUE
    assert not service.secret_exists(admin, "FORGED_KEY")


def test_new_pages_refuse_framing_and_another_orgs_secrets(console):
    service, client, csrf = console
    for path in ("/secrets/API_KEY", "/secrets/API_KEY/versions/1/restore", "/secrets/import", "/audit?view=changes"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "frame-ancestors 'none'" in page.headers.get("content-security-policy", ""), path
        assert page.headers.get("x-content-type-options") == "nosniff"
        assert ALICE_VALUE not in page.text and ALICE_OLD not in page.text
    for path in (
        "/secrets/THEIR_KEY?org=evilcorp",
        "/secrets/THEIR_KEY/versions/1/restore?org=evilcorp",
        "/audit?view=changes&org=evilcorp",
    ):
        assert client.get(path).status_code in (403, 404), path
    taken = client.post(
        "/secrets/THEIR_KEY/versions/1/restore?org=evilcorp", data={"csrf": csrf}, headers=SAME, follow_redirects=False
    )
    assert taken.status_code in (403, 404)
    pushed = client.post(
        "/secrets/import?org=evilcorp",
        data={"csrf": csrf, "content": "THEIR_KEY=overwritten-1234", "update": "1"},
        headers=SAME,
        follow_redirects=False,
    )
    assert pushed.status_code in (403, 404)
    assert _current(service, "org:evilcorp", "THEIR_KEY") == BOB_VALUE + "-2"


def test_import_problems_on_the_console_are_escaped_and_echo_no_value(console):
    service, client, csrf = console
    content = f'{{"<img src=x onerror=alert(1)>": "{ALICE_VALUE}", "OK_NAME": 5, "API_KEY": "{ALICE_OLD}"}}\n'
    page = client.post("/secrets/import", data={"csrf": csrf, "content": content}, headers=SAME)
    assert page.status_code == 422
    assert "<img" not in page.text and "onerror=alert" not in page.text
    assert ALICE_VALUE not in page.text and ALICE_OLD not in page.text
    broken = client.post(
        "/secrets/import",
        data={"csrf": csrf},
        files={"file": ("x.env", f'CERT="open\n{CERT_LINE}\n'.encode())},
        headers=SAME,
    )
    assert broken.status_code == 422 and CERT_NAME not in broken.text


# logic.mask and run replay, through the real worker pool ---------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "redteam-lifecycle", workers=2, run_timeout_s=10.0)
    try:
        admin = service.actor()
        alice = service.create_user(admin, "alice")
        bob = service.create_user(admin, "bob")
        service.create_secret(alice, "KEY", ALICE_VALUE)
        service.create_secret(bob, "KEY", BOB_VALUE)
        yield service, alice, bob
    finally:
        service.close()


def _test_run(service: Service, who, source: str, data: str = "probe-data") -> dict:
    files = files_from_json({"name": "probe", "secrets": ["KEY"], "source": source})
    return service.execute_function(who, files, event_name="probe", data=data)


SURROGATE_MASK = """import logic

def main(event, secrets):
    token = chr(0xD800) + "derived-token-" + secrets.KEY[:8]
    logic.mask(token)
    logic.log.info("token", token)
    return {"token": token}
"""


def test_a_mask_with_a_lone_surrogate_is_refused_not_a_parent_crash(world):
    """hole: the parent could not build the mask's URL form: UnicodeEncodeError out of
    the engine (500 on the API, a delivery that dies), and the value unmasked in logs
    (written as "?" there, so the raw mask never matched)."""
    service, alice, _bob = world
    record = _test_run(service, alice, SURROGATE_MASK)
    assert record["status"] == "error" and record["error"]["type"] == "MaskError", record
    assert "lone surrogate" in record["error"]["message"]
    # The parent applies the same rule to a compromised worker's frame (a protocol crash).
    assert mask_problem("\ud800derived-token-1234", []) is not None
    assert mask_problem("\udfffabcd", ["x" * 8]) is not None
    assert mask_problem("fine-\u00e9t\u00e9-value", []) is None


MASK_ENCODINGS = """import base64
import json
import logic

def main(event, secrets):
    derived = "drv-" + secrets.KEY[::-1]
    logic.log.info("before", derived)
    logic.mask(derived)
    for prefix in ("", "u", "us", "user:"):
        logic.log.info(base64.b64encode((prefix + derived).encode()).decode())
    logic.log.info(base64.urlsafe_b64encode(("x" + derived).encode()).decode().rstrip("="))
    logic.log.info(derived.encode().hex(), derived.encode().hex().upper(), json.dumps(json.dumps(derived)))
    logic.publish("masked/out", {"v": derived})
    raise ValueError("failed with " + derived)
"""


def test_a_mask_covers_its_encodings_everywhere_even_before_the_call(world):
    service, alice, _bob = world
    derived = "drv-" + ALICE_VALUE[::-1]
    record = _test_run(service, alice, MASK_ENCODINGS, data=derived)  # in the trigger's copy too
    text = json.dumps(record)
    assert record["status"] == "error"
    assert leaks(text, derived) == [] and leaks(text, ALICE_VALUE) == []
    assert base64.b64encode(derived.encode()).decode()[:12] not in text
    assert record["trigger"]["event"]["data"] == "[[SENSITIVE]]"


ECHO = """import logic

def main(event, secrets):
    logic.log.info("data", event.data, len(secrets.KEY))
    return {"data": event.data}
"""


def _deploy(service: Service, who, name: str = "echo") -> None:
    service.deploy_function(
        who,
        files_from_json(
            {
                "name": name,
                "secrets": ["KEY"],
                "source": ECHO,
                "triggers": [{"type": "event", "event_name": "echo-in"}],
            }
        ),
    )


def test_replay_of_another_owners_run_runs_nothing(world, settings):
    service, alice, bob = world
    _deploy(service, alice, "alice-echo")
    _deploy(service, bob, "bob-echo")
    mine = service.execute_function(alice, "alice-echo", event_name="echo-in", data=ALICE_VALUE)
    assert mine["trigger"]["event"]["data"] == "[[SENSITIVE]]"  # the display copy, redacted
    count = service.store.db.one("SELECT COUNT(*) FROM runs")[0]
    for attempt in (
        lambda: service.replay_run(bob, mine["id"]),
        lambda: service.replay_run(bob, mine["id"], "bob-echo"),
        lambda: service.replay_run(bob, mine["id"], "alice-echo"),
        lambda: service.replay_run(alice, mine["id"], "bob-echo"),
        lambda: service.replay_run(alice, "../" + mine["id"]),
        lambda: service.replay_run(alice, mine["id"] + "%00"),
        lambda: service.replay_run(alice, "' OR 1=1 --"),
    ):
        with pytest.raises(LogicError) as refused:
            attempt()
        assert ALICE_VALUE not in str(refused.value)
    assert service.store.db.one("SELECT COUNT(*) FROM runs")[0] == count
    bob_token = service.create_token(bob)
    with TestClient(create_app(service), headers={"Authorization": f"Bearer {bob_token}"}) as client:
        for path in (
            f"/v1/logic/runs/{mine['id']}/replay",
            f"/v1/logic/functions/bob-echo/runs/{mine['id']}/replay",
            f"/v1/logic/functions/alice-echo/runs/{mine['id']}/replay",
            f"/v1/logic/runs/..%2F{mine['id']}/replay",
            f"/v1/orgs/alice/logic/runs/{mine['id']}/replay",
        ):
            answer = client.post(path)
            assert answer.status_code in (403, 404), (path, answer.status_code)
            assert ALICE_VALUE not in answer.text
    assert service.store.db.one("SELECT COUNT(*) FROM runs")[0] == count
    # Alice's own replay sees the raw input but shows it redacted, in the record and the API.
    again = service.replay_run(alice, mine["id"])
    assert again["replay_of"] == mine["id"] and again["result"] == {"data": "[[SENSITIVE]]"}
    assert ALICE_VALUE not in json.dumps(again) and ALICE_VALUE not in json.dumps(service.get_run(alice, again["id"]))


MASK_THEN_HANG = """import logic

def main(event, secrets):
    derived = "hang-" + secrets.KEY[::-1]
    logic.log.info("early", derived)
    logic.mask(derived)
    logic.publish("hang/out", derived)
    while True:
        pass
"""


def test_a_run_that_times_out_after_a_mask_is_still_masked(world):
    """The masks a worker sent before it was killed still redact what it wrote."""
    service, alice, _bob = world
    files = files_from_json({"name": "hang", "secrets": ["KEY"], "source": MASK_THEN_HANG, "limits": {"timeout_s": 1}})
    record = service.execute_function(alice, files, event_name="hang", data="x")
    assert record["status"] == "timeout", record["status"]
    derived = "hang-" + ALICE_VALUE[::-1]
    assert record["logs"] and leaks(json.dumps(record), derived) == []


def test_a_replay_masks_the_values_its_first_run_masked(world):
    """hole: the first run masked its event's data (the secret it read); after the secret
    was updated -- or the function stopped declaring it -- the replay read other values and
    showed the replaced one, a kept version, in its trigger copy, logs and result."""
    service, alice, _bob = world
    service.create_secret(alice, "ROTATING", "first-rotating-v4lue-91ab")
    source = 'import logic\n\ndef main(event, secrets):\n    logic.log.info("got", event.data, len(secrets.ROTATING))\n'
    manifest = {"name": "rotating", "secrets": ["ROTATING"], "source": source}
    manifest["triggers"] = [{"type": "event", "event_name": "rotating-in"}]
    service.deploy_function(alice, files_from_json(manifest))
    first = service.execute_function(alice, "rotating", event_name="rotating-in", data="first-rotating-v4lue-91ab")
    assert "first-rotating-v4lue-91ab" not in json.dumps(first)
    service.update_secret(alice, "ROTATING", "second-rotating-v4lue-77cd")
    replayed = service.replay_run(alice, first["id"])
    assert replayed["status"] == "success" and leaks(json.dumps(replayed), "first-rotating-v4lue-91ab") == []
    # A new version that no longer declares it: its current value is masked too.
    manifest = {
        **manifest,
        "secrets": [],
        "source": "import logic\n\ndef main(event):\n    logic.log.info(event.data)\n",
    }
    service.deploy_function(alice, files_from_json(manifest))
    second = service.execute_function(alice, "rotating", event_name="rotating-in", data="second-rotating-v4lue-77cd")
    assert "second-rotating-v4lue-77cd" in json.dumps(second)  # it read nothing: nothing to mask
    again = service.replay_run(alice, replayed["id"])
    text = json.dumps(again) + json.dumps(service.get_run(alice, again["id"]))
    assert leaks(text, "second-rotating-v4lue-77cd") == [] and leaks(text, "first-rotating-v4lue-91ab") == []
