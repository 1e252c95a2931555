"""One accounting of a run's output, on both sides of the worker (runtime/sandbox/output.py
LogBudget): whichever side cuts the log, the same marker follows and the cut tail is
masked back over the longest encoded form of every secret the run read.

The attack (December review): 4,090 empty lines, then a line that the 64 KiB cap cuts
in the middle of a secret. The sandbox counted an empty line as 0 bytes, the server as 1,
so the server's cap cut first, wrote its own marker, and the masking of cut tails (which
knew only the sandbox's marker) left 32 of the secret's 33 characters readable.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from runtime.manifest import files_from_json
from runtime.service import Service
from runtime.workers.pool import WorkerPool
from store import Settings, Store
from store.sensitive import MASK
from tests.support import runtime_service

KEY = 'sk-"naïve"/key+\\value=0123456789abcdefXYZ'
LOG_MAX = 2048

# The sandbox writes each promised encoding itself (no urllib there: a small quote()).
ENCODE = r"""
import base64
import binascii
import json

SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def quote(text):
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        out.append(c if b < 128 and c in SAFE else "%%%02X" % b)
    return "".join(out)


def encode(kind, value):
    data = value.encode("utf-8")
    if kind == "plain":
        return value
    if kind == "json":
        return json.dumps(value)
    if kind == "json_raw":
        return json.dumps(value, ensure_ascii=False)
    if kind == "json_twice":
        return json.dumps(json.dumps(value))
    if kind == "repr":
        return repr(value)
    if kind == "ascii":
        return ascii(value)
    if kind == "bytes_repr":
        return repr(data)
    if kind == "base64":
        return base64.b64encode(data).decode("ascii")
    if kind == "base64_url":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if kind == "base85":
        return base64.b85encode(data).decode("ascii")
    if kind == "hex":
        return binascii.hexlify(data).decode("ascii").upper()
    if kind == "url":
        return quote(value)
    raise ValueError(kind)
"""

CUT = (
    ENCODE
    + r"""
def main(event, secrets):
    plan = json.loads(event.data)
    shape, lines, into = plan["shape"], plan["lines"], plan["into"]
    form = encode(plan["kind"], secrets.KEY)
    for i in range(lines):
        print(shape)
    used = lines * (len(shape.encode("utf-8")) + 1)
    pad = LOG_MAX - used - 1 - into  # the cut falls `into` characters into the form
    print("x" * pad + form + " and the rest of the line")
    print("a line after the cut")
    return len(form)
"""
)

KINDS = [
    "plain",
    "json",
    "json_raw",
    "json_twice",
    "repr",
    "ascii",
    "bytes_repr",
    "base64",
    "base64_url",
    "base85",
    "hex",
    "url",
]


def host_form(kind: str, value: str) -> str:
    namespace: dict = {}
    exec(ENCODE, namespace)
    return namespace["encode"](kind, value)


def readable_pieces(form: str, size: int = 6) -> set[str]:
    """Every `size`-character piece of an encoded form: none may survive in a log."""
    return {form[i : i + size] for i in range(len(form) - size + 1)}


def assert_no_piece(record: dict, form: str) -> None:
    text = json.dumps(record, ensure_ascii=False)
    logs = " ".join(line["message"] for line in record["logs"])
    for piece in readable_pieces(form):
        assert piece not in logs, f"{piece!r} of the secret's form survived the cut"
    assert KEY not in text


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "cuts", workers=2, log_max_bytes=LOG_MAX, run_timeout_s=5)
    try:
        actor = service.actor()
        service.create_secret(actor, "KEY", KEY)
        files = files_from_json({"name": "cutter", "source": f"LOG_MAX = {LOG_MAX}\n" + CUT, "secrets": ["KEY"]})
        yield service, actor, files
    finally:
        service.close()


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(KINDS),
    shape=st.sampled_from(["", "a", "é", "中文", "ab cd", "\t"]),
    lines=st.integers(0, 400),
    into=st.integers(-3, 140),
)
def test_a_cut_through_any_encoded_form_leaves_none_of_it(small, kind, shape, lines, into):
    service, actor, files = small
    form = host_form(kind, KEY)
    into = min(into, len(form) + 3)
    if lines * (len(shape.encode()) + 1) + into + 40 > LOG_MAX:
        return  # the cut would fall before the line
    record = service.execute_function(
        actor, files, event_name="cut", data=json.dumps({"kind": kind, "shape": shape, "lines": lines, "into": into})
    )
    assert record["status"] == "success", record["error"]
    assert record["result"] == len(form)
    assert record["logs"][-1]["message"] == f"[log truncated: limit of {LOG_MAX} bytes reached]"
    assert sum(len(line["message"].encode()) + 1 for line in record["logs"][:lines]) == lines * (
        len(shape.encode()) + 1
    )
    assert_no_piece(record, form)


def test_the_reviewers_reproducer_at_the_default_cap(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "cut-default", workers=2)
    try:
        actor = service.actor()
        key = "k" + base64.b32encode(b"api-key-of-33-chars!").decode().lower()[:32]
        service.create_secret(actor, "API_KEY", key)
        source = (
            "def main(event, secrets):\n"
            "    for i in range(4090):\n"
            "        print()\n"
            "    print('x' * (65536 - 32) + secrets.API_KEY)\n"
            "    return 'done'\n"
        )
        record = service.execute_function(
            actor, files_from_json({"name": "reproducer", "source": source, "secrets": ["API_KEY"]}), event_name="go"
        )
        assert record["status"] == "success"
        logs = " ".join(line["message"] for line in record["logs"])
        for piece in readable_pieces(key, 4):
            assert piece not in logs
        assert record["logs"][-1]["message"] == "[log truncated: limit of 65536 bytes reached]"
        assert record["logs"][-2]["message"].endswith(MASK)
    finally:
        service.close()


def test_a_chatty_run_is_truncated_and_keeps_its_result_and_events(small):
    service, actor, _files = small
    source = (
        "import logic\n"
        "def main(event):\n"
        "    for i in range(300000):\n"
        "        print('a')\n"
        "    logic.publish('chatty-done', 'kept')\n"
        "    return {'printed': 300000}\n"
    )
    record = service.execute_function(actor, files_from_json({"name": "chatty", "source": source}), event_name="go")
    assert record["status"] == "success", record["error"]
    assert record["result"] == {"printed": 300000}
    assert record["events_published"] == [{"name": "chatty-done", "data": "kept"}]
    assert len(record["logs"]) == LOG_MAX // 2 + 1  # 'a' and its newline each, then the marker
    assert record["logs"][-1] == {
        "at": record["logs"][-1]["at"],
        "level": "warning",
        "message": f"[log truncated: limit of {LOG_MAX} bytes reached]",
    }


def test_when_the_parent_cuts_a_worker_that_ignored_the_cap_the_tail_is_masked_too(tmp_path: Path):
    """A compromised worker sends past the cap without cutting: the parent cuts with the same
    budget, writes the same marker, and the engine masks the tail before it."""
    settings = Settings(home=tmp_path / "rogue-home", workers=2, log_max_bytes=LOG_MAX, run_timeout_s=5)
    Store.initialize(settings)[0].close()
    pool = WorkerPool(settings, executor="tests.runtime.workers.rogue_executor")
    service = Service(Store.open(settings), pool=pool)
    try:
        actor = service.actor()
        service.create_secret(actor, "KEY", KEY)
        source = f"# rogue: overflow-log-with-secret:{LOG_MAX}\ndef main(event, secrets):\n    return secrets.KEY\n"
        record = service.execute_function(
            actor, files_from_json({"name": "rogue", "source": source, "secrets": ["KEY"]}), event_name="go"
        )
        messages = [line["message"] for line in record["logs"]]
        assert messages[-1] == f"[log truncated: limit of {LOG_MAX} bytes reached]"
        assert "more after the cap" not in " ".join(messages)  # the line the rogue sent past the cap
        assert sum(len(m.encode()) + 1 for m in messages[:-1]) <= LOG_MAX
        assert messages[-2].endswith(MASK)
        assert_no_piece(record, KEY)
    finally:
        service.close()
