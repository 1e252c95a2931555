"""`logic.mask` on the sandbox's side (runtime/sandbox/masks.py): what reaches the host,
and what is refused before it does. The parent's own checks are in
tests/runtime/workers/test_rogue_masks.py, the masking itself in tests/security/test_mask.py."""

from __future__ import annotations

import pytest

from runtime.execution.redactor import MIN_VALUE_CHARS
from runtime.sandbox.masks import MASK_MAX_BYTES, MASK_MIN_CHARS, MASKS_PER_RUN_MAX, mask_problem
from store.settings import Settings


def test_the_rules_are_the_redactors_and_the_secrets():
    assert MASK_MIN_CHARS == MIN_VALUE_CHARS  # a shorter mask would never be masked anyway
    assert Settings().secret_value_max_bytes == MASK_MAX_BYTES
    assert MASKS_PER_RUN_MAX == 50  # DESIGN's limit


def test_each_value_reaches_the_host_once(sandbox_run):
    ran = sandbox_run(
        """
        import logic

        def main(event):
            token = "tok-" + event.data
            logic.mask(token)
            logic.mask(token)
            logic.mask("another-value")
            return "ok"
        """
    )
    assert ran.status == "success", ran.error
    assert ran.host.masks == ['tok-{"i": 7}', "another-value"]


def test_a_str_subclass_is_masked_as_its_exact_text(sandbox_run):
    ran = sandbox_run(
        """
        import logic

        class Sly(str):
            def encode(self, *args):
                return b"x"
            def isascii(self):
                return True

        def main(event):
            logic.mask(Sly("derived-text"))
            return "ok"
        """
    )
    assert ran.status == "success", ran.error
    assert ran.host.masks == ["derived-text"] and type(ran.host.masks[0]) is str


@pytest.mark.parametrize(
    "call, kind, message",
    [
        ("logic.mask('ab')", "MaskError", "the value is 2 characters; values shorter than 4 characters"),
        ("logic.mask('x' * (64 * 1024 + 1))", "MaskError", "the value is 65,537 bytes; the limit is 65,536 bytes"),
        ("logic.mask(1234)", "TypeError", "logic.mask() takes str, not int"),
        ("logic.mask(['a-list-value'])", "TypeError", "logic.mask() takes str, not list"),
    ],
)
def test_refusals_raise_in_the_function_and_send_nothing(sandbox_run, call, kind, message):
    ran = sandbox_run(f"import logic\n\ndef main(event):\n    {call}\n")
    assert ran.status == "error" and ran.error["type"] == kind
    assert message in ran.error["message"]
    assert ran.host.masks == []


def test_the_message_never_quotes_the_value():
    assert "sec" not in (mask_problem("sec", set()) or "")
    assert "derived" not in (mask_problem(["derived-value"], set()) or "")
