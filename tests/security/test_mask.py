"""`logic.mask(value)`: a value a function derived is masked in everything the run sends back.

The whole flow through a real `logic serve` (a derived HMAC logged, returned and
published: no sink shows it) is tests/e2e/test_mask_flow.py, with the function defined
here. Here, through the real worker pool: the refusals (a short value, a non-string, the
51st value) and that the mask value itself is never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse

import pytest

from runtime.manifest import files_from_json
from store.sensitive import MASK
from tests.support import runtime_service

SECRET = "mask-test-signing-key-5e0c9a7b1d"
DATA = "order-1234"
SIGNATURE = hmac.new(SECRET.encode(), DATA.encode(), hashlib.sha256).hexdigest()


def forms(value: str) -> list[str]:
    """The value and the encodings of it the function below writes."""
    data = value.encode()
    return [
        value,
        base64.b64encode(data).decode(),
        urllib.parse.quote(value, safe=""),
        json.dumps(value),
        data.hex(),
    ]


SIGNER = """import base64
import hashlib
import hmac
import json
import logic


def main(event, secrets):
    signature = hmac.new(secrets.SIGNING_KEY.encode(), event.data.encode(), hashlib.sha256).hexdigest()
    logic.log.info("before the mask", signature)
    MASK_CALL
    logic.log.info("signature", signature)
    print("encoded", base64.b64encode(signature.encode()).decode(), signature.encode().hex())
    logic.publish("signed/out", {"sig": signature, "again": json.dumps(signature)})
    logic.publish("signed/text", "sig=" + signature)
    return {"signature": signature, "b64": base64.b64encode(signature.encode()).decode()}
"""
MASKED = SIGNER.replace("MASK_CALL", "logic.mask(signature)")
UNMASKED = SIGNER.replace("MASK_CALL", "pass")
# What the masked run must never show: the signature, its base64, URL, JSON and hex forms.
FORBIDDEN = forms(SIGNATURE)


def assert_clean(text: str, where: str) -> None:
    for form in FORBIDDEN:
        assert form not in text, f"the masked signature leaked into {where}"


# refusals, through the real worker pool ------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "masks", workers=2, run_timeout_s=10.0)
    try:
        alice = service.actor()
        service.create_secret(alice, "SIGNING_KEY", SECRET)
        yield service, alice
    finally:
        service.close()


def execute(service, alice, source: str, data: str = DATA) -> dict:
    files = files_from_json({"name": "probe", "secrets": ["SIGNING_KEY"], "source": source})
    return service.execute_function(alice, files, event_name="probe", data=data)


def test_a_short_value_is_refused_and_the_error_says_why(world):
    service, alice = world
    record = execute(service, alice, "import logic\n\ndef main(event):\n    logic.mask('abc')\n    return 'no'\n")
    assert record["status"] == "error"
    assert record["error"]["type"] == "MaskError"
    assert record["error"]["message"] == (
        "logic.mask(): the value is 3 characters; values shorter than 4 characters are never masked "
        "(they would hide ordinary text and protect nothing)"
    )


def test_a_refusal_can_be_caught_and_four_characters_are_enough(world):
    service, alice = world
    source = (
        "import logic\n\n"
        "def main(event):\n"
        "    try:\n"
        "        logic.mask('')\n"
        "    except logic.MaskError as exc:\n"
        "        caught = str(exc)\n"
        "    logic.mask('wxyz')\n"
        "    return [caught, 'wxyz']\n"
    )
    record = execute(service, alice, source)
    assert record["status"] == "success", record["error"]
    assert record["result"][0].startswith("logic.mask(): the value is 0 characters")
    assert record["result"][1] == MASK


@pytest.mark.parametrize("value, kind", [("12345678", "int"), ("b'derived-bytes'", "bytes"), ("None", "NoneType")])
def test_a_non_string_is_refused(world, value, kind):
    service, alice = world
    record = execute(service, alice, f"import logic\n\ndef main(event):\n    logic.mask({value})\n")
    assert record["status"] == "error" and record["error"]["type"] == "TypeError"
    assert record["error"]["message"].startswith(f"logic.mask() takes str, not {kind}")


def test_fifty_values_mask_and_the_fifty_first_is_refused(world):
    service, alice = world
    source = (
        "import logic\n\n"
        "def main(event):\n"
        "    values = ['derived-%04d' % i for i in range(51)]\n"
        "    for value in values[:50]:\n"
        "        logic.mask(value)\n"
        "    logic.mask(values[0])  # again: not one more\n"
        "    logic.log.info(' '.join(values))\n"
        "    logic.mask(values[50])\n"
    )
    record = execute(service, alice, source)
    assert record["status"] == "error" and record["error"]["type"] == "MaskError"
    assert record["error"]["message"] == "logic.mask(): a run may mask at most 50 values"
    logged = record["logs"][0]["message"]
    assert "derived-0000" not in logged and "derived-0049" not in logged
    assert logged.endswith("derived-0050")  # the refused one is not masked (and says so)


def test_the_mask_value_is_never_stored(world):
    service, alice = world
    fn = service.deploy_function(
        alice,
        files_from_json({"name": "stored-mask", "secrets": ["SIGNING_KEY"], "source": MASKED}),
    )
    record = service.execute_function(alice, fn.name, event_name="sign/masked", data=DATA)
    assert record["status"] == "success" and MASK in json.dumps(record)
    home = service.settings.home
    raw = b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.name.startswith("logic.db"))
    for form in FORBIDDEN:
        assert form.encode() not in raw, "the masked value (or an encoding of it) is in the database file"


def test_masks_past_the_runs_masking_budget_withhold_the_output(settings):
    # Threat: many long multi-line masks making the parent build a huge redactor. Past the
    # budget the record keeps nothing the masks were to hide (and says why).
    from store import Store
    from tests.support import in_process_service

    Store.initialize(settings)[0].close()
    service = in_process_service(settings.model_copy(update={"masking_bytes_per_run_max": 200_000}))
    try:
        source = (
            "import logic\n\n"
            "def main(event):\n"
            "    values = ['\\n'.join('line-%03d-of-value-%d' % (i, n) for i in range(40)) for n in range(3)]\n"
            "    for value in values:\n"
            "        logic.mask(value)\n"
            "    logic.log.info(values[0])\n"
            "    logic.publish('out', values[1])\n"
            "    return values[2]\n"
        )
        files = files_from_json({"name": "costly", "source": source})
        record = service.execute_function(service.actor(), files, event_name="x")
        assert record["status"] == "error" and record["error"]["type"] == "MaskLimitExceeded"
        assert "withheld" in record["error"]["message"]
        assert record["logs"] == [] and record["result"] is None and record["events_published"] == []
        assert "line-000-of-value" not in json.dumps(record)
    finally:
        service.close()
