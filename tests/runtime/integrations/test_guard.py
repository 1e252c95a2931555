"""runtime.integrations.guard: which destination addresses are refused, and how the refusal reads."""

from __future__ import annotations

import pytest

from runtime.integrations.guard import address_refusal
from tests.runtime.integrations.support import ALLOW


@pytest.mark.parametrize(
    "address, shown, kind",
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("127.255.0.9", "127.255.0.9", "loopback"),
        ("10.0.0.5", "10.0.0.5", "private"),
        ("172.16.0.1", "172.16.0.1", "private"),
        ("192.168.1.1", "192.168.1.1", "private"),
        ("169.254.169.254", "169.254.169.254", "link-local"),  # cloud metadata
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("224.0.0.1", "224.0.0.1", "multicast"),
        ("240.0.0.1", "240.0.0.1", "reserved"),
        ("255.255.255.255", "255.255.255.255", "reserved"),
        ("100.64.0.1", "100.64.0.1", "not globally routable"),  # carrier-grade NAT
        ("192.0.2.1", "192.0.2.1", "private"),  # documentation: Python counts it private
        ("::1", "::1", "loopback"),
        ("::", "::", "unspecified"),
        ("fe80::1%eth0", "fe80::1%eth0", "link-local"),
        ("fc00::1", "fc00::1", "private"),
        ("ff02::1", "ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1 (127.0.0.1)", "loopback"),
        ("::ffff:10.0.0.5", "::ffff:10.0.0.5 (10.0.0.5)", "private"),
        ("2002:7f00:1::", "2002:7f00:1:: (127.0.0.1)", "loopback"),  # 6to4, which Python calls global
        ("64:ff9b::a00:5", "64:ff9b::a00:5 (10.0.0.5)", "private"),  # NAT64, which Python calls global
    ],
)
def test_address_refusal_names_the_address_and_the_setting(address, shown, kind):
    assert address_refusal(address) == f"destination {shown} is not a public address ({kind}); {ALLOW}"


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001:80b::200e"])
def test_public_addresses_pass(address):
    assert address_refusal(address) is None
