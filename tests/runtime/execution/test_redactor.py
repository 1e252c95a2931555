"""Redactor: every registered value and its common encodings become MASK.

Threat: a secret value leaving a run in a log, result, error or event, as
itself or encoded (Security promise 1).
"""

from __future__ import annotations

import ast
import base64
import json
import random
import re
import string
import threading
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runtime.execution import redactor as redactor_module
from runtime.execution.redactor import MIN_ENCODED_CHARS, MIN_VALUE_CHARS, Redactor
from store.sensitive import MASK, Sensitive

SECRET = "s3cr3t-T0ken/with+chars"
fast = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Secret text: any Unicode except surrogates (secrets are valid UTF-8).
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=40)


def visible(text: str) -> str:
    """Output with each MASK cut out, so no match can span a mask."""
    return text.replace(MASK, "\0")


def b64_stable_core(encode, prefix: bytes, data: bytes, suffix: bytes) -> str:
    """The characters of encode(prefix+data+suffix) that depend on data alone.

    Worked out from the real stream, not from the redactor's own slice: char
    j covers bits [6j, 6j+6), data fills bits [8p, 8(p+n)).
    """
    encoded = encode(prefix + data + suffix).decode()
    p, n = len(prefix), len(data)
    return encoded[-(-8 * p // 6) : 8 * (p + n) // 6]


# -- the exact value and the empty cases ------------------------------------


def test_exact_value_is_masked_everywhere():
    r = Redactor([SECRET])
    assert r.redact(f"a {SECRET} b {SECRET}") == f"a {MASK} b {MASK}"
    assert r.redact(SECRET) == MASK


def test_text_without_match_is_returned_unchanged_same_object():
    r = Redactor([SECRET])
    for text in ("", "nothing here", "x" * 300_000):
        assert r.redact(text) is text


def test_empty_redactor_returns_input_unchanged():
    r = Redactor([])
    text = "anything at all"
    assert not r
    assert r.redact(text) is text
    assert r.redact_json({"a": [1, "b"]}) == {"a": [1, "b"]}
    assert r.pattern_count == 0


def test_empty_string_value_is_ignored():
    r = Redactor(["", SECRET])
    assert r.value_count == 1
    assert r.redact("a b") == "a b"


def test_sensitive_values_are_accepted():
    r = Redactor([Sensitive(SECRET)])
    assert r.redact(SECRET) == MASK


def test_bad_value_type_is_refused_without_quoting_it():
    with pytest.raises(TypeError) as info:
        Redactor([b"bytes-secret-value"])
    assert "bytes-secret-value" not in str(info.value)


def test_redact_refuses_non_str():
    with pytest.raises(TypeError):
        Redactor([SECRET]).redact(SECRET.encode())


# -- base64 -----------------------------------------------------------------


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:", b"Basic "])
def test_base64_at_every_offset(encode, prefix):
    r = Redactor([SECRET])
    data = SECRET.encode()
    for suffix in (b"", b"x", b"xy", b"tail of the stream"):
        encoded = encode(prefix + data + suffix).decode()
        core = b64_stable_core(encode, prefix, data, suffix)
        out = r.redact(f"header {encoded} footer")
        assert core in encoded
        assert core not in visible(out)
        assert MASK in out


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_value_alone_is_masked_whole_padded_or_not(encode):
    value = "pad-me-1"  # 8 bytes: one '=' of padding
    r = Redactor([value])
    padded = encode(value.encode()).decode()
    assert padded.endswith("=")
    assert r.redact(f"[{padded}]") == f"[{MASK}]"
    assert r.redact(f"[{padded.rstrip('=')}]") == f"[{MASK}]"


@fast
@given(
    value=values,
    prefix=st.binary(max_size=12),
    suffix=st.binary(max_size=12),
    urlsafe=st.booleans(),
)
def test_base64_stable_core_is_found_after_any_prefix(value, prefix, suffix, urlsafe):
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    data = value.encode()
    core = b64_stable_core(encode, prefix, data, suffix)
    encoded = encode(prefix + data + suffix).decode()
    out = Redactor([value]).redact(encoded)
    assert core in encoded
    assert core not in visible(out)
    # Only the edges that mix in neighbouring bits may stay visible: at most
    # 3 characters before the mask (prefix chars aside) and 4 after it.
    before, after = out.partition(MASK)[0], out.rpartition(MASK)[2]
    assert len(before) <= -(-8 * len(prefix) // 6)
    assert len(after) <= len(encoded) - 8 * (len(prefix) + len(data)) // 6


@fast
@given(value=values, prefix=st.binary(max_size=9))
def test_base64_at_end_of_stream_leaves_no_value_char(value, prefix):
    data = value.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(prefix + data).decode()
        for encoded in (padded, padded.rstrip("=")):
            assert Redactor([value]).redact(encoded).endswith(MASK)


# -- base85 -----------------------------------------------------------------


@fast
@given(value=values, prefix=st.binary(max_size=9), suffix=st.binary(max_size=9))
def test_base85_full_groups_are_masked_after_any_prefix(value, prefix, suffix):
    data = value.encode()
    p, n = len(prefix), len(data)
    first, end = -(-p // 4), (p + n) // 4  # groups inside data
    assume(end - first >= 2)
    for encode in (base64.b85encode, base64.a85encode):
        stable = encode((prefix + data + suffix)[4 * first : 4 * end]).decode()
        encoded = encode(prefix + data + suffix).decode()
        assert stable in encoded
        assert stable not in visible(Redactor([value]).redact(encoded))


# -- URL, JSON, repr, hex ---------------------------------------------------


def test_url_encodings():
    value = "p@ss word/with+plus&é"
    r = Redactor([value])
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote_plus(value))
    forms = [quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, safe="/"), lower_hex]
    assert "+" in quote_plus(value) and "%20" in quote(value) and "%c3%a9" in lower_hex
    for form in forms:
        assert r.redact(f"https://h/x?k={form}&z=1") == f"https://h/x?k={MASK}&z=1", form


@pytest.mark.parametrize(
    "value",
    ['quote"d\\back', "new\nline\ttab", "uni é 中文 😀 text", "ctrl\x01\x7f char"],
)
def test_json_escapes(value):
    r = Redactor([value])
    for ascii_only in (True, False):
        text = json.dumps({"v": value}, ensure_ascii=ascii_only)
        out = json.loads(r.redact(text))
        assert out == {"v": MASK}
        twice = json.dumps({"log": text}, ensure_ascii=ascii_only)  # JSON inside JSON
        assert json.loads(json.loads(r.redact(twice))["log"]) == {"v": MASK}


@pytest.mark.parametrize(
    "value",
    ['it\'s "both" quotes', "only 'single' here", 'only "double" here', "back\\slash\n", "é😀\x00x"],
)
def test_repr_escapes_both_quote_styles(value):
    r = Redactor([value])
    assert r.redact(repr(value)) in (f"'{MASK}'", f'"{MASK}"')
    assert r.redact(repr([value, 1])) in (f"['{MASK}', 1]", f'["{MASK}", 1]')
    other = "'" if repr(value)[0] == '"' else '"'
    forced = other + "".join("\\" + c if c == other else repr(c)[1:-1] for c in value) + other
    assert ast.literal_eval(forced) == value  # a valid literal in the other quote style
    assert r.redact(forced) == other + MASK + other
    assert r.redact(repr(value.encode())) in (f"b'{MASK}'", f'b"{MASK}"')


def test_hex_lower_and_upper():
    r = Redactor(["héllo-secret"])
    h = "héllo-secret".encode().hex()
    assert r.redact(f"0x{h}.") == f"0x{MASK}."
    assert r.redact(f"0x{h.upper()}.") == f"0x{MASK}."


# -- multi-line, overlaps, adjacency ----------------------------------------


def test_multiline_secret_masked_line_by_line():
    pem = "-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG9w0B\n  AQEFAASCAT8wggE7AgEAAkEA  \nab\n-----END KEY-----\n"
    r = Redactor([pem])
    assert r.redact(pem) == MASK
    assert r.redact("line: MIIBVQIBADANBgkqhkiG9w0B") == f"line: {MASK}"
    assert r.redact("    AQEFAASCAT8wggE7AgEAAkEA") == f"    {MASK}"
    assert r.redact(json.dumps(pem)) == f'"{MASK}"'
    assert r.redact("ab") == "ab"  # a line too short to mask on its own
    logged = "\n".join(f"log: {line}" for line in pem.splitlines())
    out = r.redact(logged)
    assert "MIIBVQ" not in out and "AQEFAAS" not in out


def test_overlapping_secrets_merge_into_one_mask():
    r = Redactor(["abcdefgh", "abcdefghijkl", "ghijklmn"])
    assert r.redact("<abcdefghijklmn>") == f"<{MASK}>"
    assert r.redact("<abcdefgh>") == f"<{MASK}>"


def test_overlapping_occurrences_of_one_secret_merge():
    r = Redactor(["abcabc"])
    assert r.redact("xabcabcabcx") == f"x{MASK}x"


def test_adjacent_matches_merge():
    r = Redactor(["first-secret", "second-secret"])
    assert r.redact("first-secretsecond-secretfirst-secret!") == f"{MASK}!"
    assert r.redact("first-secret first-secret") == f"{MASK} {MASK}"


def test_encoded_and_plain_side_by_side_merge():
    r = Redactor([SECRET])
    text = SECRET + SECRET.encode().hex()
    assert r.redact(text) == MASK


# -- short values -----------------------------------------------------------


def test_values_shorter_than_the_minimum_are_not_masked():
    r = Redactor(["abc", "on", "x"])
    assert MIN_VALUE_CHARS == 4
    assert not r
    assert r.skipped_count == 3
    assert r.redact("abc on x") == "abc on x"


def test_value_of_minimum_length_is_masked_with_its_long_enough_encodings():
    r = Redactor(["abcd"])
    assert r.skipped_count == 0
    assert r.redact("[abcd]") == f"[{MASK}]"
    assert r.redact(base64.b64encode(b"abcd").decode()) == MASK  # YWJjZA== (8)
    assert r.redact(b"abcd".hex()) == MASK
    # base64 at offset 1 has a stable core of 4 characters: too short to mask
    core = b64_stable_core(base64.b64encode, b"x", b"abcd", b"")
    assert len(core) < MIN_ENCODED_CHARS
    assert r.redact(f" {core} ") == f" {core} "


def test_short_lines_of_a_long_value_are_skipped_but_the_value_is_not():
    r = Redactor(["ab\ncd"])
    assert r.redact("ab\ncd") == MASK
    assert r.redact("ab cd") == "ab cd"


# -- redact_json ------------------------------------------------------------


def test_redact_json_nested_structures():
    r = Redactor([SECRET, "12345678"])
    value = {
        SECRET: "key is secret",
        "list": [SECRET, 1, 2.5, True, None, {"deep": f"x{SECRET}y"}],
        "tuple": (SECRET, "ok"),
        "pin": 12345678,
        "other": 42,
        "flag": False,
        7: "int key",
    }
    out = r.redact_json(value)
    assert out == {
        MASK: "key is secret",
        "list": [MASK, 1, 2.5, True, None, {"deep": f"x{MASK}y"}],
        "tuple": [MASK, "ok"],
        "pin": MASK,
        "other": 42,
        "flag": False,
        7: "int key",
    }
    assert SECRET not in json.dumps(out) and "12345678" not in json.dumps(out)
    assert value["list"][0] == SECRET  # the input is not changed


def test_redact_json_returns_the_input_itself_when_nothing_matched():
    r = Redactor([SECRET])
    logs = [{"at": "t", "level": "info", "message": "all clear"}, {"n": [1, 2.5, None]}]
    assert r.redact_json(logs) is logs
    assert Redactor([]).redact_json(logs) is logs
    with_tuple = {"pair": ("a", "b")}
    out = r.redact_json(with_tuple)
    assert out == {"pair": ["a", "b"]} and with_tuple == {"pair": ("a", "b")}  # tuples come back lists


def test_redact_json_copies_when_something_matched_and_leaves_the_input_alone():
    r = Redactor([SECRET])
    logs = [{"at": "t", "level": "info", "message": "clean"}, {"at": "t", "level": "info", "message": SECRET}]
    out = r.redact_json(logs)
    assert out is not logs and out[1]["message"] == MASK
    assert logs[1]["message"] == SECRET


def test_redact_json_scalars():
    r = Redactor([SECRET])
    assert r.redact_json(None) is None
    assert r.redact_json(True) is True
    assert r.redact_json(3.5) == 3.5
    assert r.redact_json(SECRET) == MASK


# -- reuse, cache, repr -----------------------------------------------------


def test_same_redactor_reused_and_shared_between_threads():
    r = Redactor([SECRET, "another-secret"])
    text = f"{SECRET} and another-secret"
    results = []

    def work():
        for _ in range(200):
            results.append(r.redact(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {f"{MASK} and {MASK}"}


def test_for_values_is_cached_on_the_set_of_values():
    Redactor.clear_cache()
    a = Redactor.for_values(["one-secret", "two-secret", "one-secret"])
    b = Redactor.for_values(["two-secret", Sensitive("one-secret")])
    c = Redactor.for_values(["two-secret"])
    assert a is b
    assert c is not a
    assert a.redact("one-secret") == MASK
    Redactor.clear_cache()
    assert Redactor.for_values(["one-secret", "two-secret"]) is not a


def test_repr_never_shows_a_value():
    value = "visible-in-repr?"
    r = Redactor([value])
    for text in (repr(r), str(r), f"{r}"):
        assert value not in text
        assert "visible" not in text
    assert "patterns=" in repr(r)
    assert r.pattern_count > 10


# -- scale and Unicode ------------------------------------------------------


def test_thousands_of_secrets():
    rng = random.Random(5)
    secrets = ["".join(rng.choice(string.ascii_letters) for _ in range(24)) for _ in range(3000)]
    r = Redactor(secrets)
    assert r.value_count == 3000
    picked = secrets[::97]
    text = " | ".join(picked)
    assert r.redact(text) == " | ".join([MASK] * len(picked))
    b64 = base64.b64encode(("k:" + secrets[1234]).encode()).decode()
    assert b64_stable_core(base64.b64encode, b"k:", secrets[1234].encode(), b"") not in visible(r.redact(b64))
    assert r.redact("nothing to see here") == "nothing to see here"


@pytest.mark.parametrize("value", ["😀🔑😀🔑", "秘密のパスワード", "пароль-123", "mixé中😀"])
def test_unicode_secrets(value):
    r = Redactor([value])
    assert r.redact(f"«{value}»") == f"«{MASK}»"
    assert r.redact(json.dumps(value)) == f'"{MASK}"'
    assert r.redact(quote(value)) == MASK
    assert r.redact(value.encode().hex()) == MASK
    assert r.redact(base64.b64encode(value.encode()).decode()) == MASK
    assert r.redact("😀" * 3 + value + "中") == "😀" * 3 + MASK + "中"


def test_text_with_lone_surrogates_does_not_fail():
    r = Redactor([SECRET])
    text = "\ud800 " + SECRET + " \udfff" + "z" * 5000
    assert r.redact(text) == "\ud800 " + MASK + " \udfff" + "z" * 5000


def test_long_secret_is_masked_whole():
    rng = random.Random(9)
    value = "".join(rng.choice(string.ascii_letters + "é中 ") for _ in range(20_000))
    r = Redactor([value, value[:256]])
    assert r.redact(f"<{value}>") == f"<{MASK}>"
    assert r.redact(f"<{value[:256]}>") == f"<{MASK}>"
    assert r.redact(f"<{json.dumps(value)}>") == f'<"{MASK}">'
    hexed = value.encode().hex()
    assert r.redact(f"<{hexed}>") == f"<{MASK}>"
    truncated = value[:5000]
    assert r.redact(truncated).startswith(MASK)  # its first 256 characters


# -- the pre-filter never hides a match -------------------------------------


def _unfiltered(r: Redactor) -> Redactor:
    clone = object.__new__(Redactor)
    for name in Redactor.__slots__:
        object.__setattr__(clone, name, getattr(r, name))
    clone._filtered = False
    return clone


def _interleave(noise: list[str], secrets: list[str], picks: list[int]) -> str:
    """The noise pieces with a picked secret after each (as many as there are picks)."""
    parts = []
    for i, piece in enumerate(noise):
        parts.append(piece)
        if i < len(picks):
            parts.append(secrets[picks[i] % len(secrets)])
    return "".join(parts)


def _redact_in_windows(r: Redactor, text: str, window: int) -> str:
    old = redactor_module._WINDOW_CHARS
    redactor_module._WINDOW_CHARS = window
    try:
        return r.redact(text)
    finally:
        redactor_module._WINDOW_CHARS = old


@fast
@given(
    secrets=st.lists(st.text(alphabet="abcé😀\n", min_size=4, max_size=30), min_size=1, max_size=6),
    noise=st.lists(st.text(alphabet="abcxé😀\n", max_size=20), max_size=30),
    picks=st.lists(st.integers(0, 1000), max_size=30),
    window=st.sampled_from([1, 7, 64, 1 << 16]),
)
def test_filtered_scan_equals_plain_automaton_scan(secrets, noise, picks, window):
    text = _interleave(noise, secrets, picks)
    r = Redactor(secrets)
    out = _redact_in_windows(r, text, window)
    assert out == _unfiltered(r).redact(text)
    for piece in [s for s in secrets if len(s) >= MIN_VALUE_CHARS]:
        assert piece not in visible(out)


@fast
@given(
    secrets=st.lists(st.text(alphabet="ab01-_:/", min_size=4, max_size=40), min_size=1, max_size=6),
    noise=st.lists(st.text(alphabet="ab01xyz-_:/ ", max_size=40), max_size=40),
    picks=st.lists(st.integers(0, 1000), max_size=40),
    window=st.sampled_from([16, 64, 300, 1 << 16]),
)
def test_located_regions_in_ascii_text_equal_the_plain_automaton_scan(secrets, noise, picks, window):
    """ASCII windows are scanned only around the filter words that hit (Redactor._regions)."""
    text = _interleave(noise, secrets, picks) * 3
    r = Redactor(secrets)
    assert _redact_in_windows(r, text, window) == _unfiltered(r).redact(text)


def test_a_hit_word_recurring_past_the_region_limit_still_masks_everything():
    value = "recurring-secret-0123456789abcdef"
    r = Redactor([value])
    word = value[:16]  # shares the filter's words with the value, over and over
    text = (word + " ") * 20_000 + value + " tail"
    assert r.redact(text) == (word + " ") * 20_000 + MASK + " tail"


def test_a_long_secret_is_masked_whole_across_windows_of_ascii_text():
    value = "".join(random.Random(7).choice(string.ascii_letters) for _ in range(5000))
    r = Redactor([value])
    text = "x" * 70_000 + value + "y" * 62_000 + value + "z" * 10
    out = r.redact(text)
    assert out == "x" * 70_000 + MASK + "y" * 62_000 + MASK + "z" * 10
    assert out == _unfiltered(r).redact(text)


def test_filter_windows_catch_matches_on_every_boundary(monkeypatch):
    monkeypatch.setattr(redactor_module, "_WINDOW_CHARS", 1000)
    value = "boundary-secret-value-0123456789"  # 32 characters
    r = Redactor([value])
    step = max(1000, 4 * r._max_len)
    for at in range(step - 40, step + 5):
        text = "x" * at + value + "y" * 3000
        assert r.redact(text) == "x" * at + MASK + "y" * 3000, at


def test_many_short_values_fall_back_to_the_automaton():
    shorts = [f"k{i:03d}" for i in range(50)]  # 4 characters each
    r = Redactor(shorts)
    assert not r._filtered
    text = "a k007 b k049 c" + "z" * 70_000
    assert r.redact(text) == f"a {MASK} b {MASK} c" + "z" * 70_000


@pytest.mark.parametrize("length", range(MIN_VALUE_CHARS, 41))
def test_filter_finds_a_value_of_any_length_at_any_alignment(length):
    # Filter words sit at multiples of 4, 8 or 16 bytes: try every offset.
    value = "".join(random.Random(length).choice(string.ascii_letters) for _ in range(length))
    r = Redactor([value])
    assert r._filtered
    for offset in range(17):
        for pad in ("-", "é"):  # 1- and 2-byte UTF-8 padding
            text = pad * offset + value + "."
            assert r.redact(text) == pad * offset + MASK + ".", (offset, pad)


def _one_by_one(redactor, value):
    """redact_json as the definition says: each string, key and number on its own."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {_one_by_one(redactor, k): _one_by_one(redactor, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_one_by_one(redactor, v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = json.dumps(value)
        masked = redactor.redact(text)
        return value if masked == text else masked
    return value


_SECRETS = ["Tok3n-Alpha-9f8e7d", "pass word 12345", "4242424242"]
_pieces = st.one_of(st.sampled_from(_SECRETS), st.text(alphabet="abcXYZ 0123-:/", max_size=12))
_texts = st.lists(_pieces, max_size=4).map("".join)
_json = st.recursive(
    st.one_of(_texts, st.integers(), st.sampled_from([4242424242, 1.5, True, None])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_redact_json_in_one_pass_equals_redacting_each_text(value):
    redactor = Redactor.for_values(_SECRETS)
    assert redactor.redact_json(value) == _one_by_one(redactor, value)
