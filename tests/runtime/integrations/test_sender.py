"""runtime.integrations.sender: retries, backoff, caps and deadlines (no network: httpx.MockTransport;
the real guard against a loopback receiver is tests/security/test_webhook_rebinding.py)."""

from __future__ import annotations

import time

import httpx

from runtime.integrations.guard import DestinationRefused, GuardedBackend, GuardedTransport
from runtime.integrations.request import RenderedRequest
from runtime.integrations.sender import WebhookSender
from tests.runtime.integrations.support import ALLOW


class Script:
    """A MockTransport handler that answers from a list and records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sender(handler, *, retries=2, max_body=1000, sleeps=None):
    return WebhookSender(
        timeout_s=2,
        retries=retries,
        max_body_bytes=max_body,
        transport=httpx.MockTransport(handler),
        backoff_s=0.25,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


def get(url="https://h/x"):
    return RenderedRequest("GET", url, {}, {})


def test_retries_5xx_with_exponential_backoff_then_succeeds():
    script, sleeps = Script(httpx.Response(500), httpx.Response(503), httpx.Response(200, text="ok")), []
    out = sender(script, sleeps=sleeps).send(get())
    assert (out.ok, out.status, out.body, out.attempts, sleeps) == (True, 200, b"ok", 3, [0.25, 0.5])


def test_retries_are_bounded():
    script = Script(httpx.Response(502))
    out = sender(script, retries=2).send(get())
    assert (out.ok, out.status, out.attempts, len(script.requests)) == (False, 502, 3, 3)


def test_no_retry_on_4xx():
    script = Script(httpx.Response(404), httpx.Response(200))
    out = sender(script).send(get())
    assert (out.ok, out.status, out.attempts) == (False, 404, 1)


def test_connection_errors_are_retried():
    script = Script(httpx.ConnectError("refused"), httpx.Response(200))
    out = sender(script).send(get())
    assert (out.ok, out.attempts) == (True, 2)
    out = sender(Script(httpx.ConnectError("refused"))).send(get())
    assert (out.ok, out.attempts, out.status) == (False, 3, None)
    assert out.error.startswith("connection failed")


def test_read_timeout_is_not_retried():
    out = sender(Script(httpx.ReadTimeout("slow"))).send(get())
    assert (out.ok, out.attempts, out.error) == (False, 1, "timed out after 2 s")


def test_redirects_are_not_followed():
    script = Script(httpx.Response(302, headers={"Location": "https://evil.example/"}))
    out = sender(script).send(get())
    assert (out.ok, out.status, len(script.requests)) == (False, 302, 1)


def test_response_body_is_capped():
    out = sender(Script(httpx.Response(200, content=b"x" * 5000)), max_body=1000).send(get())
    assert (len(out.body), out.truncated, out.ok) == (1000, True, True)
    out = sender(Script(httpx.Response(200, content=b"x" * 1000)), max_body=1000).send(get())
    assert (len(out.body), out.truncated) == (1000, False)


def test_a_broken_rendered_request_is_not_sent():
    script = Script(httpx.Response(200))
    out = sender(script).send(RenderedRequest("GET", "https://h/", {"X": "a\nb"}, {}))
    assert (out.ok, out.request, out.attempts, script.requests) == (False, None, 0, [])
    assert "line break" in out.error


def test_sender_ignores_netrc_and_proxy_environment(tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine h login server-user password server-pass\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:1")
    script = Script(httpx.Response(200))
    assert sender(script).send(get()).ok
    assert "authorization" not in script.requests[0].headers


def test_a_trickling_response_is_cut_off_at_the_deadline():
    def trickle():  # 10 s of one byte per 50 ms, well under the body cap: only the deadline ends it
        for _ in range(200):
            time.sleep(0.05)
            yield b"x"

    s = WebhookSender(
        timeout_s=0.3,
        retries=2,
        max_body_bytes=1000,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=trickle())),
        sleep=lambda s: None,
    )
    started = time.monotonic()
    out = s.send(get())
    elapsed = time.monotonic() - started
    assert (out.ok, out.error, out.attempts) == (False, "timed out after 0.3 s", 1)
    assert 0.3 <= elapsed < 5, elapsed  # generous on a loaded machine, half the trickle's length


def test_a_refused_destination_is_final_and_not_retried():

    script, sleeps = Script(DestinationRefused(f"destination 10.0.0.5 is not a public address (private); {ALLOW}")), []
    out = sender(script, retries=3, sleeps=sleeps).send(get())
    assert (out.ok, out.attempts, sleeps, len(script.requests)) == (False, 1, [], 1)
    assert out.error == f"destination 10.0.0.5 is not a public address (private); {ALLOW}"


def test_the_guard_is_on_unless_a_transport_is_given_and_private_is_off_by_default():
    s = WebhookSender(timeout_s=1, retries=0, max_body_bytes=10)
    try:
        assert s.allow_private is False
        assert isinstance(s.client._transport, GuardedTransport)
        backend = s.client._transport._pool._network_backend
        assert isinstance(backend, GuardedBackend) and backend.allow_private is False
    finally:
        s.close()


def test_sent_says_whether_the_request_went_out():
    assert sender(Script(httpx.Response(404))).send(get()).sent is True
    assert sender(Script(httpx.ReadTimeout("slow")), retries=0).send(get()).sent is True
    assert sender(Script(httpx.ConnectError("refused")), retries=0).send(get()).sent is False
    assert sender(Script(httpx.Response(200))).send(get("file:///x")).sent is False  # never built


def test_reject_unauthorized_false_skips_certificate_checks_for_that_request_only(tmp_path):
    import ssl

    from tests.receiver import Receiver
    from tests.security.test_webhook_rebinding import _certificates  # an unknown CA's certificate

    _ca, chain, key = _certificates("self-signed.test")
    (tmp_path / "leaf.pem").write_bytes(chain)
    (tmp_path / "leaf.key").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    s = WebhookSender(timeout_s=2, retries=0, max_body_bytes=1000, allow_private=True)
    with Receiver(ssl_context=server_ctx, body=b"reached") as r:
        try:
            checked = s.send(RenderedRequest("GET", r.url + "/x", {}, {}))
            assert not checked.ok and "certificate verify failed" in checked.error
            unchecked = s.send(RenderedRequest("GET", r.url + "/x", {}, {}, verify=False))
            assert (unchecked.ok, unchecked.body) == (True, b"reached")
            again = s.send(RenderedRequest("GET", r.url + "/x", {}, {}))
            assert not again.ok and "certificate verify failed" in again.error
            assert len(r.requests) == 1
        finally:
            s.close()
