"""Promise 7, memory and CPU: whatever secrets a tenant declares, reads or prints, the
server's memory stays bounded and a run costs it a bounded amount of work.

The attack (from the December review): 12 secrets of 64 KiB made of the characters
that expand most under JSON / repr / URL escaping, and runs that each read a different
subset of them. Before the fix every subset built and kept its own redactor with every
encoded form in full: ~35 MB of server memory and ~3 s of server CPU per run.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest

from runtime.execution.redactor import Redactor, masking_cost
from runtime.manifest import files_from_json
from store.sensitive import MASK
from tests.support import runtime_service

NASTY = "\x01\x02\"'\\"


def nasty_values(count: int, size: int = 65536, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(NASTY) for _ in range(size)) for _ in range(count)]


def test_many_subsets_of_large_secrets_keep_the_server_within_its_cache_bound():
    # In a fresh interpreter, so the figure is this attack's and nothing else's.
    script = textwrap.dedent("""
        import json, random, sys
        from runtime.execution import redactor
        from runtime.execution.redactor import Redactor
        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        rng = random.Random(1)
        values = ["".join(rng.choice('\\x01\\x02"\\'\\\\') for _ in range(65536)) for _ in range(12)]
        redactor.set_cache_bytes(16 * 2**20)
        Redactor.for_values(values[:2])  # the first build warms the imports
        start = rss_mb()
        for r in range(12):
            Redactor.for_values([v for i, v in enumerate(values) if i != r])
        print(json.dumps({"grew_mb": rss_mb() - start, "cache": Redactor.cache_bytes()}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["cache"] <= 16 * 2**20
    # 12 subsets used to keep ~35 MB each (over 400 MB); now the cache's 16 MiB plus slack.
    assert figures["grew_mb"] < 48, figures


def test_patterns_are_built_once_per_value_and_shared_between_sets():
    Redactor.clear_cache()
    values = nasty_values(4, size=4096)
    Redactor.for_values(values)
    after_first = Redactor.cache_bytes()
    for r in range(4):  # every other subset reuses the values' patterns
        Redactor.for_values([v for i, v in enumerate(values) if i != r])
    per_value_forms = after_first - Redactor.for_values(values)._nbytes
    grown = Redactor.cache_bytes() - after_first
    assert grown < 4 * Redactor.for_values(values)._nbytes  # only the small per-set matchers
    assert per_value_forms > 0


def test_a_long_encoded_form_is_still_masked_in_full_and_nothing_else_is():
    Redactor.clear_cache()
    value = nasty_values(1, size=20000)[0]
    redactor = Redactor.for_values([value])
    for form in (json.dumps(value), repr(value), ascii(value), json.dumps(json.dumps(value))):
        assert MASK in redactor.redact(f"<{form}>")
        assert value not in redactor.redact(f"<{form}>")
    # The same first characters (the automaton's anchor) with a different rest: not a match.
    near = value[:5000] + ("x" if value[5000] != "x" else "y") + value[5001:]
    assert redactor.redact(near) == near


def test_masking_cost_is_bounded_by_the_number_of_encodings_not_the_value_length():
    Redactor.clear_cache()
    small, large = masking_cost(nasty_values(1, size=1024)), masking_cost(nasty_values(1, size=65536, seed=2))
    assert large < 2 * small  # a 64x longer value costs about the same to keep


# -- through the engine: the limits a run meets ------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(
        tmp_path_factory,
        "tenant-memory",
        workers=2,
        run_timeout_s=10,
        secret_bytes_per_run_max=3 * 65536,
        masking_bytes_per_run_max=4 * 2**20,
    )
    try:
        actor = service.actor()
        for i, value in enumerate(nasty_values(6, size=65536, seed=7)):
            service.create_secret(actor, f"BIG_{i}", value)
        yield service, actor
    finally:
        service.close()


READ_ALL_BUT = """
def main(event, secrets):
    skip = int(event.data)
    got = []
    for i in range(6):
        if i == skip:
            continue
        try:
            got.append(len(secrets["BIG_%d" % i]))
        except Exception as exc:
            return {"read": got, "refused": str(exc)}
    return {"read": got}
"""


def test_a_run_reading_more_secret_bytes_than_allowed_gets_a_clear_error(env):
    service, actor = env
    files = files_from_json({"name": "greedy", "source": READ_ALL_BUT, "secrets": [f"BIG_{i}" for i in range(6)]})
    for skip in range(3):
        record = service.execute_function(actor, files, event_name="go", data=str(skip))
        assert record["status"] == "success"
        assert record["result"]["read"] == [65536] * 3  # the fourth goes over 3 x 64 KiB
        assert "may total at most 196,608 bytes" in record["result"]["refused"]
        # Every secret actually handed out is audited; the refused one was never handed out.
        assert len(record["secrets_accessed"]) == 3


def test_a_run_whose_masking_would_cost_too_much_is_refused(env):
    service, actor = env
    many_lines = "\n".join(f"line-{i:05d}-{'z' * 8}" for i in range(3000))  # each line is masked too
    service.create_secret(actor, "LINES", many_lines)
    source = "def main(event, secrets):\n    return len(secrets.LINES)\n"
    record = service.execute_function(
        actor, files_from_json({"name": "lines", "source": source, "secrets": ["LINES"]}), event_name="go"
    )
    assert record["status"] == "error"
    assert "masking the secrets this run read would take more memory" in record["error"]["message"]
    assert record["secrets_accessed"] == []


def test_a_function_may_declare_at_most_50_secrets(env):
    service, actor = env
    source = "def main(event):\n    return 1\n"
    with pytest.raises(Exception, match="51 secrets are declared; at most 50 are allowed"):
        service.deploy_function(
            actor, files_from_json({"name": "hoarder", "source": source, "secrets": [f"S_{i}" for i in range(51)]})
        )
