"""Every 429 the HTTP API answers goes out after LOGIC_REFUSAL_HOLD_MS (runtime/http/errors.py).

Threat: a client that ignores Retry-After and asks again at once (a retry loop, a
flooding script) makes the server spend its CPU on refusals, one per round trip.
The hold bounds it to a few a second per connection. What must not happen: the
hold delaying anything but the refused request (another owner's publish, another
error), or holding a thread. The hold here is 10 s, so a held answer cannot arrive
within the test's waits however busy the machine; nothing is timed from above but
the answers that must not be held, which get 10 s.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from runtime.http import errors
from runtime.http.app import create_app
from runtime.http.auth_throttle import AuthThrottle
from runtime.service import Service
from store import Settings, Store

HELD_MS = 10_000  # the most the setting allows
NOT_YET_S = 0.5  # a held answer is still missing this long after it was asked for
PROMPT_S = 10.0  # an answer that is not held arrives within this


@pytest.fixture
def world(tmp_path):
    """A service whose owners may each have one delivery waiting (nothing delivers here)."""

    def make(hold_ms: int = HELD_MS):
        settings = Settings(
            home=tmp_path / "home", master_key=None, queue_max_pending_per_owner=1, refusal_hold_ms=hold_ms
        )
        store, init = Store.initialize(settings)
        store.close()
        service = Service.open(settings)
        opened.append(service)
        admin = service.actor()
        service.create_integration(admin, {"name": "hook", "event": "busy", "url": "https://example.com/in"})
        bob = service.create_user(admin, "bob")
        service.create_integration(bob, {"name": "hook", "event": "busy", "url": "https://example.com/in"})
        return service, init.token, service.store.identity.create_token(bob)

    opened: list[Service] = []
    yield make
    for service in opened:
        service.close()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "route"])
def test_a_full_queues_429_is_held_and_nobody_else_waits_for_it(world, fast_path):
    service, alice, bob = world()

    async def scenario():
        async with client(create_app(service, publish_fast_path=fast_path)) as http:
            first = await http.post("/v1/events", json={"name": "busy"}, headers=bearer(alice))
            assert first.status_code == 202  # alice's one delivery waits: her queue is full
            refused = asyncio.create_task(http.post("/v1/events", json={"name": "busy"}, headers=bearer(alice)))
            done, _ = await asyncio.wait({refused}, timeout=NOT_YET_S)
            assert not done, "the refusal was answered without its hold"
            # Meanwhile, on the same event loop: bob's publish, and errors other than 429.
            other = await asyncio.wait_for(
                http.post("/v1/events", json={"name": "busy"}, headers=bearer(bob)), PROMPT_S
            )
            missing = await asyncio.wait_for(http.get("/v1/functions/nope", headers=bearer(alice)), PROMPT_S)
            bad = await asyncio.wait_for(http.post("/v1/events", json={"name": ""}, headers=bearer(alice)), PROMPT_S)
            assert not refused.done()
            refused.cancel()
            return other.status_code, missing.status_code, bad.status_code

    assert asyncio.run(scenario()) == (202, 404, 422)
    # The held refusal wrote nothing: alice still has her one delivery.
    assert service.store.events.open_deliveries_of(service.actor().owner) == 1


def test_a_throttled_addresses_429_is_held(world):
    service, alice, _bob = world()
    app = create_app(service, auth_throttle=AuthThrottle(failures_max=1, window_s=60))

    async def scenario():
        async with client(app) as http:
            guess = await http.get("/v1/secrets", headers=bearer("lgc_guess"))
            assert guess.status_code == 401  # the one failure allowed
            throttled = asyncio.create_task(http.get("/v1/secrets", headers=bearer(alice)))
            done, _ = await asyncio.wait({throttled}, timeout=NOT_YET_S)
            throttled.cancel()
            return bool(done)

    assert asyncio.run(scenario()) is False, "the throttle's 429 was answered without its hold"


def test_the_consoles_sign_in_429_is_held(world):
    service, _alice, _bob = world()
    app = create_app(service, auth_throttle=AuthThrottle(failures_max=1, window_s=60))
    origin = {"Origin": "http://testserver"}

    async def scenario():
        async with client(app) as http:
            guess = await http.post("/sign-in", data={"token": "lgc_guess"}, headers=origin)
            assert guess.status_code == 401
            throttled = asyncio.create_task(http.post("/sign-in", data={"token": "lgc_guess"}, headers=origin))
            done, _ = await asyncio.wait({throttled}, timeout=NOT_YET_S)
            throttled.cancel()
            return bool(done)

    assert asyncio.run(scenario()) is False, "the sign-in throttle's 429 was answered without its hold"


@pytest.mark.parametrize(("hold_ms", "slept"), [(0, []), (50, [0.05])])
def test_the_hold_is_the_setting_and_zero_answers_at_once(world, monkeypatch, hold_ms, slept):
    """What the refusal waits is LOGIC_REFUSAL_HOLD_MS, and 0 waits not at all (the sleep is
    recorded, not slept, so nothing here is timed)."""
    service, alice, _bob = world(hold_ms=hold_ms)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(errors, "asyncio", SimpleNamespace(sleep=sleep))  # errors.py's asyncio only

    async def scenario():
        async with client(create_app(service)) as http:
            assert (await http.post("/v1/events", json={"name": "busy"}, headers=bearer(alice))).status_code == 202
            refused = await http.post("/v1/events", json={"name": "busy"}, headers=bearer(alice))
            missing = await http.get("/v1/functions/nope", headers=bearer(alice))  # not a 429: never held
            return refused.status_code, refused.headers["retry-after"], missing.status_code

    assert asyncio.run(scenario()) == (429, "1", 404)
    assert waits == slept
