"""SSRF through DNS: the webhook guard checks the address it connects to, not a name looked up earlier.

The attacker owns a DNS name (here `*.rebind.test`, answered by a fake
`socket.getaddrinfo`) and makes it answer a public address when checked and
127.0.0.1 when connected (rebinding), or both at once, or 127.0.0.1 spelled
in a way a string check misses. A real HTTP receiver listens on 127.0.0.1:
nothing may reach it unless the operator allowed private destinations.

Nothing here leaves the machine: `jail` makes every connect to a non-loopback
address fail (or, where a test says so, turns it into a loopback connect) and
records it. TEST-NET-1 (192.0.2.0/24) plays the public internet: Python counts
it as private, so `testnet_is_public` lets the guard treat it as public.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import socket
import ssl
import threading

import pytest

from runtime.integrations import guard, sender
from runtime.integrations.guard import DestinationRefused, GuardedBackend, GuardedTransport
from runtime.integrations.request import RenderedRequest
from runtime.integrations.sender import WebhookSender
from store import Settings
from tests.receiver import Receiver
from tests.support import OwnerIntegrations

REACHED = b"reached"  # what the loopback receiver answers, once something gets through
PUBLIC = "192.0.2.1"  # TEST-NET-1: never routed; the jail stops every connect to it anyway
LIMIT_S = 20  # no test may hang: every send runs under this bound
REAL_GETADDRINFO = socket.getaddrinfo
REAL_CONNECT = socket.socket.connect


def refusal(address: str, kind: str = "loopback") -> str:
    return f"destination {address} is not a public address ({kind}); set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it"


# -- the attacker's world ------------------------------------------------------------


class Resolver:
    """The attacker's DNS: each lookup of a name takes the next answer (the last one repeats).
    IP literals resolve to themselves, as with a real resolver (no DNS is asked)."""

    def __init__(self, *answers: list[str] | Exception):
        self.answers = list(answers)
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        try:
            ipaddress.ip_address(str(host).split("%")[0])
            return REAL_GETADDRINFO(host, port, family, type, proto, flags)
        except ValueError:
            pass
        self.lookups.append(host)
        answer = self.answers[min(len(self.lookups), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        infos = []
        for address in answer:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port)))
        return infos


class Jail:
    """socket.connect for the test: loopback only; other destinations are recorded and fail,
    or are redirected to a loopback address (as a NAT or transparent proxy would)."""

    def __init__(self):
        self.stopped: list[tuple] = []
        self.redirects: dict[tuple, tuple] = {}

    def connect(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            key = (address[0], address[1])
            if key in self.redirects:
                return REAL_CONNECT(sock, self.redirects[key])
            if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
                self.stopped.append(key)
                raise OSError(errno.ENETUNREACH, "test jail: no traffic leaves this machine")
        return REAL_CONNECT(sock, address)


@pytest.fixture(autouse=True)
def jail(monkeypatch):
    j = Jail()
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: j.connect(sock, address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda sock, address: pytest.fail("connect_ex is not jailed"))
    return j


@pytest.fixture
def testnet_is_public(monkeypatch):
    real = guard.address_refusal

    def refusal_with_testnet_public(text: str):
        return None if ipaddress.ip_address(text) in ipaddress.ip_network("192.0.2.0/24") else real(text)

    monkeypatch.setattr(guard, "address_refusal", refusal_with_testnet_public)


@pytest.fixture
def receiver():
    """The loopback HTTP receiver nothing may reach (it counts TCP connections too)."""
    with Receiver(body=REACHED) as r:
        yield r


def resolve(monkeypatch, *answers) -> Resolver:
    resolver = Resolver(*answers)
    monkeypatch.setattr(guard.socket, "getaddrinfo", resolver)
    return resolver


def send(url: str, *, retries: int = 0, allow_private: bool = False, transport=None) -> sender.SendOutcome:
    """One delivery through the real GuardedTransport, bounded in time."""
    sender = WebhookSender(
        timeout_s=2,
        retries=retries,
        max_body_bytes=1000,
        backoff_s=0,
        sleep=lambda s: None,
        allow_private=allow_private,
        transport=transport,
    )
    done: list[sender.SendOutcome] = []
    worker = threading.Thread(target=lambda: done.append(sender.send(RenderedRequest("GET", url, {}, {}))), daemon=True)
    worker.start()
    worker.join(LIMIT_S)
    sender.close()
    assert done, f"the delivery did not finish within {LIMIT_S} s"
    return done[0]


# -- rebinding -------------------------------------------------------------------------


def test_a_name_that_rebinds_to_loopback_after_the_first_lookup_reaches_nothing(
    monkeypatch, jail, receiver, testnet_is_public
):
    # Public on the first lookup, loopback on every later one: a check-then-connect design
    # resolves twice and connects to 127.0.0.1. The guard resolves once and connects to what it checked.
    resolver = resolve(monkeypatch, [PUBLIC], ["127.0.0.1"])
    out = send(f"http://rebind.test:{receiver.port}/steal")
    assert not out.ok and out.error.startswith("connection failed")
    assert resolver.lookups == ["rebind.test"]
    assert jail.stopped == [(PUBLIC, receiver.port)]  # the checked address, by number
    assert (receiver.connections, receiver.requests) == (0, [])


def test_every_retry_is_checked_again(monkeypatch, jail, receiver, testnet_is_public):
    resolver = resolve(monkeypatch, [PUBLIC], ["127.0.0.1"])
    out = send(f"http://rebind.test:{receiver.port}/steal", retries=3)
    assert (out.ok, out.attempts, out.error) == (False, 2, refusal("127.0.0.1"))  # a refusal is final
    assert resolver.lookups == ["rebind.test", "rebind.test"]
    assert jail.stopped == [(PUBLIC, receiver.port)]
    assert (receiver.connections, receiver.requests) == (0, [])


@pytest.mark.parametrize(
    "answer, refused",
    [
        ([PUBLIC, "127.0.0.1"], refusal("127.0.0.1")),
        (["127.0.0.1", PUBLIC], refusal("127.0.0.1")),
        ([PUBLIC, "::1"], refusal("::1")),
        ([PUBLIC, "::ffff:127.0.0.1"], refusal("::ffff:127.0.0.1 (127.0.0.1)")),
        ([PUBLIC, "0.0.0.0"], refusal("0.0.0.0", "unspecified")),
        ([PUBLIC, "169.254.169.254"], refusal("169.254.169.254", "link-local")),
        ([PUBLIC, "10.0.0.5"], refusal("10.0.0.5", "private")),
    ],
)
def test_a_name_with_any_private_address_is_refused_before_connecting(
    monkeypatch, jail, receiver, testnet_is_public, answer, refused
):
    resolve(monkeypatch, answer)
    out = send(f"http://rebind.test:{receiver.port}/steal", retries=2)
    assert (out.ok, out.attempts, out.error) == (False, 1, refused)
    assert jail.stopped == []  # not even the public address was tried
    assert (receiver.connections, receiver.requests) == (0, [])


def test_the_connected_peer_is_checked_whatever_routed_there(monkeypatch, jail, receiver, testnet_is_public):
    # The name checks out as public, but the connection lands on 127.0.0.1 (a NAT, a
    # transparent proxy, a resolver that answers differently below us): the peer is refused
    # before one byte of the request is written.
    resolve(monkeypatch, [PUBLIC])
    jail.redirects[(PUBLIC, 80)] = ("127.0.0.1", receiver.port)
    out = send("http://rebind.test/steal", retries=2)
    assert (out.ok, out.attempts, out.error) == (False, 1, refusal("127.0.0.1"))
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host, shown, kind",
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),  # decimal
        ("0x7f.1", "127.0.0.1", "loopback"),  # hex, short form
        ("127.1", "127.0.0.1", "loopback"),
        ("0", "0.0.0.0", "unspecified"),  # Linux delivers 0.0.0.0 to loopback
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 (127.0.0.1)", "loopback"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1 (127.0.0.1)", "loopback"),
        ("[::1]", "::1", "loopback"),
        ("[::]", "::", "unspecified"),
        ("localhost", None, "loopback"),
    ],
)
def test_every_spelling_of_the_servers_own_address_is_refused(jail, receiver, host, shown, kind):
    out = send(f"http://{host}:{receiver.port}/steal", retries=2)
    assert not out.ok and out.attempts == 1
    if shown is None:
        assert out.error.endswith(f"is not a public address ({kind}); set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    else:
        assert out.error == refusal(shown, kind)
    assert jail.stopped == []
    assert (receiver.connections, receiver.requests) == (0, [])


def test_octal_loopback_is_refused_by_the_url_parser_and_by_the_guard(jail, receiver):
    out = send(f"http://0177.0.0.1:{receiver.port}/steal")
    assert (out.ok, out.request, out.error) == (False, None, "the rendered url is not a valid URL")
    # The guard does not rely on the URL parser: glibc reads 0177.0.0.1 as 127.0.0.1.
    with pytest.raises(DestinationRefused, match=r"destination 127\.0\.0\.1 is not a public address \(loopback\)"):
        GuardedBackend(allow_private=False).connect_tcp("0177.0.0.1", receiver.port, timeout=2)
    assert (receiver.connections, receiver.requests) == (0, [])


def test_the_error_never_quotes_the_url_or_host(monkeypatch, jail, receiver):
    token = "tok-9f8e7d6c5b4a"
    resolve(monkeypatch, ["127.0.0.1"])
    out = send(f"http://{token}.rebind.test:{receiver.port}/{token}?key={token}")
    assert out.error == refusal("127.0.0.1") and token not in out.error
    resolve(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    out = send(f"http://{token}.rebind.test:{receiver.port}/{token}?key={token}")
    assert out.error.startswith("connection failed: cannot resolve the host name") and token not in out.error


# -- what the operator allows ------------------------------------------------------------


def test_allow_private_reaches_the_loopback_receiver_through_the_same_path(monkeypatch, jail, receiver):
    # The same rebinding resolver and retries: with the operator's consent the loopback
    # receiver is reached, so the refusals above are the guard's doing, not the setup's.
    resolver = resolve(monkeypatch, [PUBLIC], ["127.0.0.1"])
    out = send(f"http://rebind.test:{receiver.port}/allowed", retries=1, allow_private=True)
    assert (out.ok, out.status, out.body, out.attempts) == (True, 200, REACHED, 2)
    assert resolver.lookups == ["rebind.test", "rebind.test"]
    assert jail.stopped == [(PUBLIC, receiver.port)]
    assert [got.path for got in receiver.requests] == ["/allowed"]


def test_integrations_refuse_by_default_and_log_the_reason(
    monkeypatch, jail, receiver, store, logic_home, testnet_is_public
):
    resolve(monkeypatch, [PUBLIC, "127.0.0.1"])
    settings = Settings(home=logic_home, webhook_timeout_s=2, webhook_retries=2, webhook_allow_private=False)
    store.secrets.create("user:alice", "API_KEY", "k-0123456789abcdef")
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    try:
        record = svc.create(
            "user:alice",
            {
                "name": "inward",
                "event": "e",
                "secrets": ["API_KEY"],
                "url": f"http://rebind.test:{receiver.port}/x?key={{{{{{API_KEY}}}}}}",
            },
        )
        result = svc.fire(record, {"id": "ev-1", "name": "e", "data": "d", "published_at": "t", "source": "s"})
    finally:
        svc.close()
    assert result.response_event == ("hook-error/e", refusal("127.0.0.1"))
    assert (result.log["error"], result.log["attempts"]) == (refusal("127.0.0.1"), 1)
    assert "k-0123456789abcdef" not in repr(result)
    assert (receiver.connections, receiver.requests) == (0, [])


# -- TLS: connecting to an address, verifying the name ------------------------------------


def _certificates(name: str):
    """A CA, and a leaf certificate for `name` signed by it (PEM CA, PEM chain, PEM key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rebinding test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem).decode(), leaf.public_bytes(pem), key


@pytest.fixture
def tls_receiver(tmp_path, request):
    """An HTTPS receiver on 127.0.0.1 whose certificate names `request.param`; records the SNI it got."""
    ca, chain, key = _certificates(request.param)
    (tmp_path / "leaf.pem").write_bytes(chain)
    (tmp_path / "leaf.key").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen.append(name)
    r = Receiver(ssl_context=server_ctx, body=REACHED)
    r.ca, r.sni = ca, seen
    yield r
    r.close()


def _trusting(ca: str) -> GuardedTransport:
    return GuardedTransport(allow_private=True, ssl_context=ssl.create_default_context(cadata=ca))


@pytest.mark.parametrize("tls_receiver", ["secure.rebind.test"], indirect=True)
def test_tls_connects_to_the_address_and_verifies_the_name(monkeypatch, jail, tls_receiver):
    resolve(monkeypatch, ["127.0.0.1"])
    out = send(
        f"https://secure.rebind.test:{tls_receiver.port}/tls", allow_private=True, transport=_trusting(tls_receiver.ca)
    )
    assert (out.ok, out.body) == (True, REACHED), out.error
    assert tls_receiver.sni == ["secure.rebind.test"]  # SNI is the URL's name, not 127.0.0.1


@pytest.mark.parametrize("tls_receiver", ["other.rebind.test"], indirect=True)
def test_tls_refuses_a_certificate_for_another_name(monkeypatch, jail, tls_receiver):
    resolve(monkeypatch, ["127.0.0.1"])
    out = send(
        f"https://secure.rebind.test:{tls_receiver.port}/tls", allow_private=True, transport=_trusting(tls_receiver.ca)
    )
    assert not out.ok and "certificate verify failed" in out.error and "Hostname mismatch" in out.error
    assert tls_receiver.requests == []


@pytest.mark.parametrize("tls_receiver", ["secure.rebind.test"], indirect=True)
def test_tls_default_trust_refuses_an_unknown_ca(monkeypatch, jail, tls_receiver):
    resolve(monkeypatch, ["127.0.0.1"])
    out = send(f"https://secure.rebind.test:{tls_receiver.port}/tls", allow_private=True)
    assert not out.ok and "certificate verify failed" in out.error
    assert tls_receiver.requests == [] and tls_receiver.sni == ["secure.rebind.test"]
