"""Sensitive: a secret value wrapped so no accidental path prints it."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback

import pytest

from store import MASK, Sensitive

VALUE = "sensitive-test-value-77"


def test_every_text_form_is_the_mask():
    s = Sensitive(VALUE)
    for shown in (
        repr(s),
        str(s),
        f"{s}",
        f"{s!r}",
        f"{s:>40}",
        "%s" % s,
        f"{s}",
        repr([s]),
        repr({"k": s}),
        str((s,)),
    ):
        assert VALUE not in shown
        assert MASK in shown


def test_reveal_and_comparisons():
    s = Sensitive(VALUE)
    assert s.reveal() == VALUE
    assert s == Sensitive(VALUE) and s != Sensitive("other") and s != VALUE
    assert hash(s) == hash(Sensitive(VALUE))
    assert len(s) == len(VALUE)


def test_immutable_and_unpicklable():
    s = Sensitive(VALUE)
    with pytest.raises(AttributeError):
        s._value = "x"
    with pytest.raises(AttributeError):
        s.other = "x"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(s, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(s)
    assert not hasattr(s, "__dict__")


def test_logging_and_tracebacks_show_the_mask(caplog):
    s = Sensitive(VALUE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("value is %s / %r", s, s)
    assert VALUE not in caplog.text and MASK in caplog.text
    try:
        raise ValueError(f"bad {s}")
    except ValueError:
        text = traceback.format_exc()
    assert VALUE not in text
