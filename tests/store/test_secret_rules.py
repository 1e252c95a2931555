"""The rules of the data: secret-name syntax and value limits (no database needed)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from store.errors import InvalidInput, TooLarge
from store.secrets import check_name, check_value
from store.sensitive import Sensitive
from tests.support import DEFAULTS

SPEC = re.compile(r"[A-Z_][A-Z0-9_]*")
LIMIT = 64 * 1024
NAME_MAX = DEFAULTS["secret_name_max_chars"]  # 64
VALUE_MAX = DEFAULTS["secret_value_max_bytes"]  # LIMIT


@pytest.mark.parametrize("name", ["A", "_", "API_KEY", "_PRIVATE", "K1", "A" * 64, "__9"])
def test_good_names(name):
    assert check_name(name, max_chars=NAME_MAX) == name


@pytest.mark.parametrize(
    "name, message",
    [
        ("1ABC", "invalid secret name '1ABC'"),
        ("abc", "invalid secret name 'abc'"),
        ("A-B", "invalid secret name 'A-B'"),
        ("API KEY", "invalid secret name"),
        ("API_KEY\n", "invalid secret name"),
        ("\u00c9T\u00c9", "invalid secret name"),
        ("", "secret name must not be empty"),
        (None, "secret name must not be empty"),
        ("A" * 65, "secret name must be at most 64 characters, not 65"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(InvalidInput) as info:
        check_name(name, max_chars=NAME_MAX)
    assert message in str(info.value)
    assert info.value.status == 422 and info.value.exit_code == 1


names = st.text(alphabet=st.sampled_from("AZ_09az-. \n\u00c9\u0130"), max_size=70) | st.text(max_size=70)


@hsettings(max_examples=200, deadline=None)
@given(name=names)
def test_property_name_accepted_exactly_when_it_matches_the_spec(name):
    expected = bool(SPEC.fullmatch(name)) and len(name) <= 64
    try:
        check_name(name, max_chars=NAME_MAX)
    except InvalidInput:
        accepted = False
    else:
        accepted = True
    assert accepted == expected, name


@hsettings(max_examples=100, deadline=None)
@given(name=st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,63}\Z"))
def test_property_every_spec_name_is_accepted(name):
    assert check_name(name, max_chars=NAME_MAX) == name


@pytest.mark.parametrize("value", ["x", "x" * LIMIT, "\u00e9" * (LIMIT // 2), " ", "\x00", b"bytes ok"])
def test_good_values(value):
    expected = value.decode() if isinstance(value, bytes) else value
    assert check_value(value, max_bytes=VALUE_MAX) == expected


def test_a_sensitive_value_is_unwrapped():
    assert check_value(Sensitive("wrapped"), max_bytes=VALUE_MAX) == "wrapped"


@pytest.mark.parametrize(
    "value, error, message",
    [
        ("", InvalidInput, "secret value must not be empty"),
        (b"", InvalidInput, "secret value must not be empty"),
        ("x" * (LIMIT + 1), TooLarge, f"secret value is {LIMIT + 1} bytes; the limit is {LIMIT} bytes"),
        (b"x" * (LIMIT + 1), TooLarge, f"secret value is {LIMIT + 1} bytes"),
        ("\u00e9" * (LIMIT // 2) + "x", TooLarge, f"{LIMIT + 1} bytes"),  # bytes, not characters
        (b"\xff\xfe-not-utf8", InvalidInput, "secret value is not valid UTF-8 text"),
        ("\ud800lone-surrogate", InvalidInput, "secret value is not valid UTF-8 text"),
        (12345, InvalidInput, "secret value must be text"),
        (None, InvalidInput, "secret value must be text"),
    ],
)
def test_bad_values_never_echo_the_value(value, error, message):
    with pytest.raises(error) as info:
        check_value(value, max_bytes=VALUE_MAX)
    assert message in str(info.value)
    if isinstance(value, (str, bytes)) and len(value) > 3:
        shown = value if isinstance(value, str) else value.decode("latin-1")
        assert shown[:32] not in str(info.value)


def test_limit_follows_settings():
    assert check_value("abcd", max_bytes=4) == "abcd"
    with pytest.raises(TooLarge):
        check_value("abcde", max_bytes=4)
