"""Masking of secret values in everything a run sends back.

How masking works
-----------------

Every text that leaves a run (log lines, the return value, error messages and
tracebacks, published event data, integration request and response logs)
passes through a `Redactor` in the parent process before it is stored or
shown. The redactor replaces each occurrence of a secret value that the run
or integration was handed with `[[SENSITIVE]]`, and also each occurrence of
these common encodings of it:

- the exact value, and each line of a multi-line value on its own
  (leading and trailing white space stripped), so a key printed one line at
  a time is masked line by line (a line as text, JSON- and repr-escaped;
  only the whole value in the binary encodings below);
- base64 of its UTF-8 bytes, standard (`+/`) and URL-safe (`-_`) alphabets,
  padded and unpadded, at each of the three byte offsets: the value encoded
  on its own, and the value encoded after any prefix (`"user:" + password`
  in a Basic auth header). Only the characters that depend on the value
  alone are matched: the one character at each end that mixes in bits of
  the neighbouring bytes stays visible (it carries at most 4 bits of the
  value), except at the end of the encoded data, where the whole tail and
  its `=` padding are masked;
- base85 (`base64.b85encode`) and Ascii85 (`base64.a85encode`) of the UTF-8
  bytes, at each of the four offsets, in the same way: the 5-character
  groups that mix in neighbouring bytes stay visible (up to 3 bytes of the
  value at each end, encoded together with their neighbours);
- URL encoding (`quote` and `quote_plus`, `/` escaped or not, upper- and
  lower-case hex, `+` or `%20` for a space);
- JSON string escaping (`ensure_ascii` on and off), also escaped twice (JSON
  text inside a JSON string);
- Python `repr` escaping, for both quote styles, of the text and of its
  UTF-8 bytes (`b'...'`), and `ascii()` escaping of the text (also what
  `%a` and `f"{x!a}"` write);
- hex of the UTF-8 bytes, lower and upper case.

Overlapping and adjacent matches become a single `[[SENSITIVE]]`, so the
number and length of the secrets cannot be read off the output.

Short values
------------

A value shorter than 4 characters (and a line of a multi-line value shorter
than 4 characters once stripped) is not masked at all: masking `"on"` or
`"42"` would wreck every log that contains those letters, and such a value
protects nothing anyway. An encoded form shorter than 6 characters is
skipped too (for a 4- or 5-character value: its base64 at offsets 1 and 2
and its base85 forms); the value itself, its hex and its whole base64 are
still masked. `Redactor.skipped_count` says how many values were too short,
so the caller can warn the secret's owner (by name, never by value).

Others draw the line in the same place or say they should: GitHub Actions
masks every registered value whatever its length and leaves it to the user
to pick values that mask well (its documentation warns about structured
values); Octopus Deploy and Google's secret-manager action for GitHub skip
values under 4 characters, Azure Pipelines lets the operator set the floor.
We prefer readable logs plus an explicit warning: use long, random secret
values.

What masking cannot catch
-------------------------

Masking finds known strings in text. Code that holds a secret can always leak
it in a form that is not one of the strings above, for example:

- transformed: reversed, upper-cased, split into characters or joined with
  separators, sliced, hashed, encrypted, XOR-ed, compressed, encoded in a way
  not listed (base32, UTF-16, octal, a base64 of a base64, a URL-encoded
  base64, MIME base64 wrapped at 76 columns, HTML entities, URL encoding
  with mixed-case hex or other choices of safe characters);
- partial: a part of a value (a prefix or a middle piece) that is not one of
  its lines, and the few edge bits of an offset base64/base85 form;
- spread out: a value written in pieces across separate log lines, events or
  runs, or hidden in timing, lengths or the choice of event names;
- numbers: a value that is all digits is masked in text and when a returned
  number's JSON text contains it, but not once arithmetic changed it.

Masking is a safety net against accidents (printing a token, echoing a
request with its headers, an exception that quotes a URL), not a sandbox
against a function that sets out to exfiltrate its own secrets: a function
can only read the secrets its manifest declares, and that is the real limit.

Cost
----

All patterns of all registered values live in one Aho-Corasick automaton
(pyahocorasick), so a scan costs about the same whatever the number of
secrets. A pattern longer than 64 characters is searched by its first 64 and
confirmed by a digest of the whole, so no redactor or cache holds a long
encoded form: a 64 KiB value's forms (~7 MB of text) are built once, in time
linear in its length, and kept as ~300 anchors and digests. The patterns of
each value are cached by value and shared by every redactor whose set of
values holds it; `for_values` caches redactors per set. Both caches share
one bound in bytes (CACHE_BYTES, settings.redactor_cache_mb), so whatever
sets of secrets tenants read, what the server keeps stays under it.
`masking_cost` says what a value adds to a redactor: the broker refuses a
read that would take a run past settings.masking_bytes_per_run_max. Before that scan each
text goes through a pre-filter: its UTF-8 bytes are read as 8- or 4-byte
words at aligned positions and looked up in the set of words that any
occurrence of a pattern must contain. Text with no secret in it (the common
case) is rejected at set-lookup speed and returned unchanged, the very same
object. In a 64 Ki-character window that may hold a match, the automaton scans
only the stretches around each occurrence of a word that hit (found again with
`bytes.find`), or, in non-ASCII text, the 1 Ki-character sub-windows that pass
the filter again. The filter is fastest when every value has 15 characters or more
(one 8-byte word looked up per 8 or 16 bytes of text); a value of 7 to 14
characters adds a pass over 4-byte words; values of 4 to 6 characters are
checked with plain substring search, and more than a handful of those turn
the filter off (the automaton alone is still exact, only slower).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import ahocorasick

from store.sensitive import MASK, Sensitive

__all__ = ["MIN_ENCODED_CHARS", "MIN_VALUE_CHARS", "Redactor", "masking_cost", "set_cache_bytes"]

MIN_VALUE_CHARS = 4
MIN_ENCODED_CHARS = 6

# The pre-filter works on windows of this many characters (plus an overlap
# of the longest pattern), so one match only costs a scan of its window.
_WINDOW_CHARS = 1 << 16
_SUB_WINDOW_CHARS = 1024  # inside a candidate window, what the automaton scans at a time
_REGIONS_MAX = 256  # hits to locate in one window before scanning it in sub-windows instead
# Patterns shorter than a word-aligned filter can guarantee to see are
# checked with `in`; past this many of them the filter is not worth it.
_SHORT_PATTERNS_MAX = 8
# Pre-filter passes as (word width, stride) in bytes, widest stride first.
_TIERS = ((8, 16), (8, 8), (4, 8), (4, 4))
_WORD_CODES: dict[int, Literal["Q", "I"]] = {8: "Q", 4: "I"}
# Longer patterns are searched by their first _ANCHOR_CHARS characters and confirmed by
# a digest of the whole: the automaton and the caches never hold a long form in full
# (a 64 KiB value's encodings come to about 7 MB of text).
_ANCHOR_CHARS = 64
_DIGEST_BYTES = 16
# What the shared caches may hold (threat: a tenant cycling through secret sets to grow
# the server): the patterns of each value, and the matchers built for sets of values.
CACHE_BYTES = 64 * 1024 * 1024
_CACHE_ENTRIES = 4096
_NODE_BYTES = 40  # what one automaton node costs (pyahocorasick's sizeof_node + its link)
_FILTER_BYTES_PER_PATTERN = 16 * 200  # up to one filter word per byte of stride, in a set and a dict


class Redactor:
    """Replaces every registered secret value, and its encodings, with MASK.

    Immutable after construction and safe to share between threads.
    """

    __slots__ = (
        "_automaton",
        "_min_len",
        "_long",
        "_value_count",
        "_skipped",
        "_pattern_count",
        "_max_len",
        "_short",
        "_tiers",
        "_filtered",
        "_nbytes",
    )

    def __init__(self, values: Iterable[str | Sensitive]):
        texts = {_reveal(v) for v in values}
        texts.discard("")
        forms = [_forms_of(value) for value in texts]
        whole: set[str] = set()
        long: dict[str, set[tuple[int, bytes]]] = {}
        for f in forms:
            whole.update(f.whole)
            for anchor, length, digest in f.long:
                long.setdefault(anchor, set()).add((length, digest))
        self._value_count = len(texts)
        self._skipped = sum(f.skipped for f in forms)
        self._pattern_count = len(whole) + sum(map(len, long.values()))
        self._max_len = max((f.longest for f in forms), default=0)
        self._min_len = min(map(len, itertools.chain(whole, long)), default=0)
        self._automaton: Any = None  # an ahocorasick.Automaton once built (the extension ships no types)
        self._long: list[tuple[tuple[int, bytes], ...]] = []
        keys = self._build_automaton(whole, long)
        self._build_filter(keys)
        self._nbytes = self._size()

    @classmethod
    def for_values(cls, values: Iterable[str | Sensitive]) -> Redactor:
        """A redactor for this set of values, shared with earlier calls.

        The order of the values and repeated values do not matter. Building
        the automaton costs far more than a redaction, and a function's
        declared secrets rarely change between runs. The cache is bounded
        in bytes (CACHE_BYTES, shared with the patterns of each value), and
        is keyed by digests, not by the values.
        """
        texts = {_reveal(v) for v in values}
        key = frozenset(_value_key(t) for t in texts)
        found = _SETS.get(key)
        if found is None:
            found = cls(texts)
            _SETS.put(key, found, found._nbytes)
        return found

    @staticmethod
    def clear_cache() -> None:
        """Forget every cached redactor and value's patterns."""
        _SETS.clear()
        _FORMS.clear()

    @staticmethod
    def cache_bytes() -> int:
        """What the shared caches hold now, by their own accounting (at most CACHE_BYTES)."""
        return _SETS.nbytes + _FORMS.nbytes

    @property
    def pattern_count(self) -> int:
        """How many distinct strings are searched for (diagnostics only)."""
        return self._pattern_count

    @property
    def value_count(self) -> int:
        return self._value_count

    @property
    def longest_match(self) -> int:
        """The length of the longest form searched for: how far back from a cut a piece of
        some encoded value could reach."""
        return self._max_len

    @property
    def skipped_count(self) -> int:
        """How many values are too short to be masked (see the module doc)."""
        return self._skipped

    def __bool__(self) -> bool:
        return self._automaton is not None

    def __repr__(self) -> str:
        # Counts only: a pattern in a repr would be the leak we exist to stop.
        return f"<Redactor values={self._value_count} patterns={self._pattern_count} skipped={self._skipped}>"

    def redact(self, text: str) -> str:
        """`text` with every match replaced by MASK; `text` itself if none."""
        if not isinstance(text, str):
            raise TypeError(f"redact() takes str, not {type(text).__name__}")
        if self._automaton is None or len(text) < self._min_len:
            return text  # also every JSON key like "at" or "level": shorter than any form
        return _masked(text, self._spans(text))

    def redact_json(self, value: Any) -> Any:
        """A JSON-like value with every string and dict key redacted.

        Lists and tuples become lists. A number whose JSON text contains a
        secret (a PIN returned as an int) becomes its redacted text: left as
        a number it would print the secret once serialised. Other values are
        returned as they are. Keys that redact to the same text collapse
        into one (the last wins), as they would in any JSON object.

        Like `redact`, which returns the very same string when nothing
        matched, this returns `value` itself when nothing in it matched and
        it holds no tuple; otherwise a new structure (the input is never
        changed).
        """
        if not isinstance(value, (dict, list, tuple)):
            return self._redact_scalar(value)
        texts: list[str] = []
        has_tuple = _collect(value, texts)
        if self._automaton is None or not texts:
            return _copy(value) if has_tuple else value
        # One scan over every text of the structure, joined: a run record's many short
        # strings cost one pass instead of a call each. Each match is then handed to the
        # text it falls in (a match across a separator masks both sides: never less).
        joined = "\0".join(texts)
        spans = self._spans(joined) if len(joined) >= self._min_len else []
        if not spans:
            return _copy(value) if has_tuple else value
        starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
        per_text: list[list[tuple[int, int]]] = [[] for _ in texts]
        for lo, hi in spans:
            i = bisect.bisect_right(starts, lo) - 1
            while i < len(texts) and starts[i] < hi:
                a, b = max(lo, starts[i]) - starts[i], min(hi, starts[i] + len(texts[i])) - starts[i]
                if b > a:
                    per_text[i].append((a, b))
                i += 1
        return _rebuild(value, iter(zip(texts, per_text, strict=True)))

    def _redact_scalar(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if _is_number(value) and self:
            text = _number_text(value)
            redacted = self.redact(text)
            return value if redacted is text else redacted
        return value

    # -- matching ---------------------------------------------------------

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every match, in no particular order (maybe some twice)."""
        n = len(text)
        if not self._filtered:
            return self._scan(text, 0, n)
        step = max(_WINDOW_CHARS, 4 * self._max_len)
        if n <= step:
            return self._scan(text, 0, n) if self._may_match(text) else []
        spans = []
        overlap = self._max_len - 1
        sub = max(_SUB_WINDOW_CHARS, 4 * self._max_len)
        for offset in range(0, n, step):
            window = text[offset : offset + step + overlap]
            regions = self._regions(window)
            if regions is None:
                continue
            if regions:  # scan only around the words that hit
                for lo, hi in regions:
                    spans += self._scan(window[lo:hi], offset + lo, hi - lo)
                continue
            # Otherwise check the window's sub-windows again and scan only those that may
            # match (the automaton is ~10x slower than the filter). A match belongs to the
            # window where it starts; the overlap makes sure that window holds it whole.
            end = min(offset + step, n)
            for lo in range(offset, end, sub):
                part = text[lo : lo + sub + overlap]
                if self._may_match(part):
                    spans += self._scan(part, lo, min(sub, end - lo))
        return spans

    def _regions(self, window: str) -> list[tuple[int, int]] | None:
        """Where in `window` matches may be: None if nowhere; else (lo, hi) ranges that
        hold every match whole, or [] for "anywhere" (short patterns, non-ASCII text, or
        a word that recurs too often to be worth locating).

        Each word of the filter that hit is found again by `bytes.find` (at any
        position, so the aligned occurrence among them) and every pattern containing
        it lies within the longest pattern's length either side of it. In ASCII text a
        byte offset is a character offset.
        """
        for pattern in self._short:
            if pattern in window:
                return []
        if not window.isascii():
            return [] if self._may_match(window) else None
        data = window.encode("ascii")
        words_of = memoryview(data)
        reach = self._max_len
        regions: list[tuple[int, int]] = []
        for width, stride, wordset, _patterns in self._tiers:
            words = words_of[: len(data) // width * width].cast(_WORD_CODES[width])
            for word in wordset.intersection(words[:: stride // width]):
                needle = word.to_bytes(width, sys.byteorder)
                at = data.find(needle)
                while at != -1:
                    if len(regions) >= _REGIONS_MAX:
                        return []
                    regions.append((max(0, at - reach), at + width + reach))
                    at = data.find(needle, at + 1)
        if not regions:
            return None
        regions.sort()
        merged = [list(regions[0])]
        for lo, hi in regions[1:]:
            if lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return [(lo, min(hi, len(window))) for lo, hi in merged]

    def _scan(self, text: str, offset: int, starts_before: int) -> list[tuple[int, int]]:
        spans = []
        for last, found in self._automaton.iter(text):
            if found > 0:
                start = last + 1 - found
                if start < starts_before:
                    spans.append((start + offset, last + 1 + offset))
                continue
            start = last + 1 - _ANCHOR_CHARS
            if start < starts_before:
                for length, digest in self._long[~found]:
                    end = start + length
                    if end <= len(text) and _digest(text[start:end]) == digest:
                        spans.append((start + offset, end + offset))
        return spans

    def _build_automaton(self, whole: set[str], long: dict[str, set[tuple[int, bytes]]]) -> list[str]:
        """One automaton for all patterns; returns the strings it searches.

        `whole` are searched as they are; each key of `long` is the first
        _ANCHOR_CHARS characters of longer patterns, confirmed on a hit by
        their (length, digest), so that a 64 KiB secret does not cost
        millions of trie nodes or megabytes of kept text. Values: > 0 is
        the length of a whole pattern, < 0 is ~index into self._long.
        """
        if not whole and not long:
            return []
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for pattern in whole:
            if pattern not in long:
                automaton.add_word(pattern, len(pattern))
        for anchor, longer in long.items():
            if anchor in whole:  # also a whole pattern: confirmed by its own digest
                longer = longer | {(len(anchor), _digest(anchor))}
            self._long.append(tuple(sorted(longer)))
            automaton.add_word(anchor, ~(len(self._long) - 1))  # replaces a length
        automaton.make_automaton()
        self._automaton = automaton
        return [p for p in whole if p not in long] + list(long)

    def _size(self) -> int:
        """About how many bytes this redactor holds (for the cache's bound)."""
        size = 1024
        if self._automaton is not None:
            size += self._automaton.get_stats()["total_size"]
        size += sum(64 + 64 * len(group) for group in self._long)
        for _width, _stride, words, found in self._tiers:
            size += 200 * len(words) + sum(8 * len(p) for p in found.values())
        return size

    def _build_filter(self, patterns: Collection[str]) -> None:
        """Words that any occurrence of a pattern must contain, for `_may_match`.

        Read the text's UTF-8 bytes as words of W bytes at positions that are
        multiples of a stride S >= W. An occurrence of a pattern of at least
        S+W-1 bytes always covers one whole such word, and that word is the
        pattern's bytes [j, j+W) for some j < S (the distance from the start
        of the occurrence to the next multiple of S). So the set of
        pattern[j:j+W] for j < S holds a word of every occurrence: a text
        none of whose words is in the set holds no occurrence. The longer the
        patterns, the wider the stride and the fewer words to look up.
        """
        self._short: tuple[str, ...] = ()
        self._tiers: tuple[tuple[int, int, frozenset[int], dict[int, tuple[str, ...]]], ...] = ()
        self._filtered = False
        if not patterns:
            return
        short: list[str] = []
        tiers: dict[tuple[int, int], list[bytes]] = {}
        for pattern in patterns:
            data = _utf8(pattern)
            for width, stride in _TIERS:
                if len(data) >= stride + width - 1:
                    tiers.setdefault((width, stride), []).append(data)
                    break
            else:
                short.append(pattern)
        if len(short) > _SHORT_PATTERNS_MAX:
            return  # too many short ones: scan everything with the automaton
        # One pass per tier: fold a tier into a narrower stride of the same
        # width when that pass is made anyway.
        for width, stride in sorted(tiers, reverse=True):
            narrower = [s for w, s in tiers if w == width and s < stride]
            if narrower:
                tiers[(width, min(narrower))] += tiers.pop((width, stride))
        built = []
        for (width, stride), datas in sorted(tiers.items(), reverse=True):
            index: dict[int, list[str]] = {}
            for data in datas:
                pattern = data.decode("utf-8", "surrogatepass")
                for j in range(stride):
                    word = int.from_bytes(data[j : j + width], sys.byteorder)
                    index.setdefault(word, []).append(pattern)
            found = {word: tuple(dict.fromkeys(p)) for word, p in index.items()}
            built.append((width, stride, frozenset(found), found))
        self._short = tuple(short)
        self._tiers = tuple(built)
        self._filtered = True

    def _may_match(self, window: str) -> bool:
        """False only if no pattern occurs in `window`."""
        for pattern in self._short:
            if pattern in window:
                return True
        data = memoryview(_utf8(window))
        for width, stride, wordset, patterns in self._tiers:
            words = data[: len(data) // width * width].cast(_WORD_CODES[width])
            hits = wordset.intersection(words[:: stride // width])
            # A word can be shared by chance with ordinary text (random ids,
            # other base64): confirm with a plain search for its patterns.
            for word in hits:
                for pattern in patterns[word]:
                    if pattern in window:
                        return True
        return False


class _ByteBoundedLRU:
    """A thread-safe LRU cache bounded by entries and by the bytes its entries report.

    One budget shared by two caches (see _FORMS, _SETS): whatever a tenant declares
    or reads, the server holds at most CACHE_BYTES of patterns and matchers.
    """

    def __init__(self, budget: _Budget):
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._budget = budget
        self.nbytes = 0

    def get(self, key):
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found[0]
            return None

    def put(self, key, value, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
        self._budget.trim()

    def pop_oldest(self) -> bool:
        with self._lock:
            if not self._items:
                return False
            _key, (_value, nbytes) = self._items.popitem(last=False)
            self.nbytes -= nbytes
            return True

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


class _Budget:
    def __init__(self):
        self.caches: list[_ByteBoundedLRU] = []

    def trim(self) -> None:
        """Evict the oldest entries, the larger cache first, until both fit."""
        while True:
            total = sum(c.nbytes for c in self.caches)
            entries = sum(len(c) for c in self.caches)
            if total <= CACHE_BYTES and entries <= _CACHE_ENTRIES:
                return
            if not max(self.caches, key=lambda c: c.nbytes).pop_oldest():
                return


_BUDGET = _Budget()
_FORMS = _ByteBoundedLRU(_BUDGET)  # value key -> _Forms
_SETS = _ByteBoundedLRU(_BUDGET)  # frozenset of value keys -> Redactor
_BUDGET.caches += [_FORMS, _SETS]
# Cache keys are keyed digests of the values, not the values: a per-process key, so a
# key seen in a memory dump cannot be checked against guessed values elsewhere.
_KEY_SECRET = os.urandom(32)


def set_cache_bytes(nbytes: int) -> None:
    """The shared caches' bound (settings.redactor_cache_mb); evicts down to it now."""
    global CACHE_BYTES
    CACHE_BYTES = max(0, int(nbytes))
    _BUDGET.trim()


def _value_key(value: str) -> bytes:
    return hashlib.blake2b(_utf8(value), key=_KEY_SECRET, digest_size=20).digest()


def _digest(text: str) -> bytes:
    return hashlib.blake2b(_utf8(text), digest_size=_DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class _Forms:
    """The patterns of one value: built once, shared by every redactor whose set holds it."""

    whole: frozenset[str]  # patterns of at most _ANCHOR_CHARS characters
    long: tuple[tuple[str, int, bytes], ...]  # (first _ANCHOR_CHARS characters, length, digest)
    longest: int
    skipped: int  # 1 when the value is too short to be masked at all
    nbytes: int  # what this object holds
    cost: int  # about what its patterns add to a redactor (automaton nodes, filter words)


def _forms_of(value: str) -> _Forms:
    key = _value_key(value)
    found = _FORMS.get(key)
    if found is None:
        found = _build_forms(value)
        _FORMS.put(key, found, found.nbytes)
    return found


def _build_forms(value: str) -> _Forms:
    """Every pattern of `value` (see the module doc); long ones kept as anchor + digest.

    Costs time linear in the value's length (each encoding is one pass), and keeps
    memory bounded by the number of encodings, not by the value's length.
    """
    whole: set[str] = set()
    long: set[tuple[str, int, bytes]] = set()
    longest = 0
    pieces = _pieces(value)
    multi_line = len(value.splitlines()) > 1
    for piece in pieces:
        # A line of a multi-line value (a PEM key printed line by line) is masked as text,
        # also escaped as JSON or repr() when logged inside a structure; its base64, hex
        # or URL forms are not searched: a certificate chain's 80 lines would cost 80
        # times the patterns of the whole value, for an unlikely leak.
        encodings = _text_forms(piece) if multi_line and piece != value else _encodings(piece)
        for pattern in itertools.chain((piece,), encodings):
            if pattern is not piece and len(pattern) < MIN_ENCODED_CHARS:
                continue
            longest = max(longest, len(pattern))
            if len(pattern) <= _ANCHOR_CHARS:
                whole.add(pattern)
            else:
                long.add((pattern[:_ANCHOR_CHARS], len(pattern), _digest(pattern)))
    nbytes = 256 + sum(100 + len(p) for p in whole) + sum(150 + _ANCHOR_CHARS for _ in long)
    searched = sum(map(len, whole)) + _ANCHOR_CHARS * len(long)
    cost = _NODE_BYTES * searched + _FILTER_BYTES_PER_PATTERN * (len(whole) + len(long)) + 64 * len(long)
    return _Forms(frozenset(whole), tuple(sorted(long)), longest, 0 if pieces else 1, nbytes, cost)


def masking_cost(values: Iterable[str | Sensitive]) -> int:
    """About how many bytes a redactor for `values` holds (their patterns are built and
    cached on the way): what a run's or a webhook's secrets may cost the server is
    checked against a limit before they are handed out."""
    return sum(_forms_of(_reveal(v)).cost for v in set(values))


def _reveal(value: str | Sensitive) -> str:
    if isinstance(value, Sensitive):
        return value.reveal()
    if isinstance(value, str):
        return value
    # Never put the value itself in the message.
    raise TypeError(f"Redactor values must be str or Sensitive, not {type(value).__name__}")


def _utf8(text: str) -> bytes:
    # surrogatepass: text decoded from JSON may hold lone surrogates; they
    # must not make redaction fail (the exception would quote the text).
    return text.encode("utf-8", "surrogatepass")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _collect(value: dict | list | tuple, out: list[str]) -> bool:
    """Append every string and number text of a container, keys included, to `out` in
    the order `_rebuild` consumes them; True if a tuple is in it (it comes back a list).

    A plain walk with the common case (a str) tested inline: a run's log is thousands
    of small dicts, and a generator or call per text cost more than the scan itself.
    """
    append = out.append
    has_tuple = False
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is str:
                append(key)
            else:
                has_tuple = _collect_item(key, out) or has_tuple
            if type(item) is str:
                append(item)
            else:
                has_tuple = _collect_item(item, out) or has_tuple
        return has_tuple
    has_tuple = isinstance(value, tuple)
    for item in value:
        if type(item) is str:
            append(item)
        else:
            has_tuple = _collect_item(item, out) or has_tuple
    return has_tuple


def _collect_item(item: Any, out: list[str]) -> bool:
    """`_collect` for one item that is not exactly a str."""
    if isinstance(item, str):
        out.append(item)
    elif isinstance(item, (dict, list, tuple)):
        return _collect(item, out)
    elif _is_number(item):
        out.append(_number_text(item))
    return False


def _rebuild(value: Any, texts: Iterator[tuple[str, list[tuple[int, int]]]]) -> Any:
    """`value` again, each text masked at its spans (tuples as lists)."""
    if isinstance(value, str):
        text, spans = next(texts)
        return _masked(text, spans)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new_key = _rebuild(key, texts)
            out[new_key] = _rebuild(item, texts)
        return out
    if isinstance(value, (list, tuple)):
        return [_rebuild(item, texts) for item in value]
    if _is_number(value):
        text, spans = next(texts)
        return _masked(text, spans) if spans else value
    return value


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the spans replaced by MASK; overlapping and touching spans merge."""
    if not spans:
        return text
    spans = sorted(spans)
    pieces = []
    pos = 0
    cur_start, cur_end = spans[0]
    for start, end in spans:
        if start > cur_end:  # a gap: flush
            pieces.append(text[pos:cur_start])
            pieces.append(MASK)
            pos = cur_end
            cur_start = start
        if end > cur_end:
            cur_end = end
    pieces.append(text[pos:cur_start])
    pieces.append(MASK)
    pieces.append(text[cur_end:])
    return "".join(pieces)


def _copy(value: Any) -> Any:
    """What `redact_json` returns when nothing matched: the same shape, tuples as lists."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(item) for item in value]
    return value


def _number_text(value: int | float) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # an int too long to print
        return ""


def _pieces(value: str) -> set[str]:
    """The value and each of its lines, those long enough to be masked."""
    pieces = {value} if len(value) >= MIN_VALUE_CHARS else set()
    for line in value.splitlines():
        line = line.strip()
        if len(line) >= MIN_VALUE_CHARS:
            pieces.add(line)
    return pieces


def _encodings(value: str) -> Iterator[str]:
    data = _utf8(value)
    yield from _base64_forms(data)
    yield from _base85_forms(data)
    yield from _url_forms(value)
    yield from _json_forms(value)
    yield from _repr_forms(value, data)
    yield data.hex()
    yield data.hex().upper()


def _text_forms(value: str) -> Iterator[str]:
    """The forms of a line of a multi-line value: escaped as text, not encoded."""
    yield from _json_forms(value)
    yield from _repr_forms(value, _utf8(value))


def _base64_forms(data: bytes) -> Iterator[str]:
    """Base64 of `data` wherever it sits in the encoded bytes.

    Output character j covers bits [6j, 6j+6) of the encoded stream. After a
    prefix of k bytes (only k mod 3 matters), `data` fills bits
    [8k, 8(k+n)); character j depends on `data` alone exactly when
    8k <= 6j and 6j+6 <= 8(k+n), that is ceil(4k/3) <= j < floor(4(k+n)/3).
    That slice of the encoding of k zero bytes + data is what appears in the
    encoding of every prefix + data + suffix. When `data` ends the stream,
    the rest of the encoding (the last partial character, then `=`) is fixed
    too: the tail forms cover it.
    """
    n = len(data)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for k in range(3):
            encoded = encode(b"\0" * k + data).decode("ascii")
            first = -(-4 * k // 3)
            yield encoded[first : 4 * (k + n) // 3]  # stable core
            yield encoded[first:]  # data at the end, padded
            yield encoded[first:].rstrip("=")  # data at the end, unpadded


def _base85_forms(data: bytes) -> Iterator[str]:
    """Base85/Ascii85 of `data` at each offset in 4-byte groups.

    Group g covers bytes [4g, 4g+4) and yields 5 characters (Ascii85: `z`
    for four zero bytes); a group depends on `data` alone when it lies
    within it. Encoding just those groups gives the same characters as the
    encoding of the whole stream.
    """
    n = len(data)
    for encode in (base64.b85encode, base64.a85encode):
        yield encode(data).decode("ascii")  # data alone or at the end
        for k in range(4):
            stream = b"\0" * k + data
            first, end = 4 * (-(-k // 4)), 4 * ((k + n) // 4)
            if end > first:
                yield encode(stream[first:end]).decode("ascii")


def _url_forms(value: str) -> Iterator[str]:
    """`quote` and `quote_plus`, with `/` safe or not, in upper- and lower-case hex.

    Percent-encoding works character by character, so each form is one `translate`
    over the value with a table of its distinct characters: linear in its length.
    """
    chars = set(value)
    for plus in (False, True):
        for safe in ("", "/"):
            table = {ord(c): _quote_char(c, safe, plus) for c in chars}
            yield value.translate(table)
            yield value.translate({k: v.lower() if v.startswith("%") else v for k, v in table.items()})


def _quote_char(c: str, safe: str, plus: bool) -> str:
    if plus and c == " ":
        return "+"
    return quote(c, safe=safe + " " if plus else safe).replace(" ", "+")


def _json_forms(value: str) -> Iterator[str]:
    """Escaped once, and twice (JSON text inside a JSON string), with every mix of
    `ensure_ascii` for the inner and the outer escaping."""
    for inner_ascii in (True, False):
        once = json.dumps(value, ensure_ascii=inner_ascii)[1:-1]
        yield once
        for outer_ascii in (True, False):
            yield json.dumps(once, ensure_ascii=outer_ascii)[1:-1]


def _repr_forms(value: str, data: bytes) -> Iterator[str]:
    """repr() of the text and of its bytes, and ascii() of the text (also `%a`, `!a`),
    between either kind of quote.

    repr escapes each character on its own; only the quote it picked depends on the
    whole string, so escape per character (one `translate`) for both quotes.
    """
    chars = set(value)
    latin = data.decode("latin-1")  # one character per byte, for translate
    for q in ("'", '"'):
        yield value.translate({ord(c): "\\" + c if c == q else repr(c)[1:-1] for c in chars})
        yield value.translate({ord(c): "\\" + c if c == q else ascii(c)[1:-1] for c in chars})
        yield latin.translate({b: "\\" + q if b == ord(q) else repr(bytes((b,)))[2:-1] for b in set(data)})
