"""The inbound token keys' cache, against a local OpenID metadata + JWKS server (issue 8).

Fetched with aiohttp (never on the event loop's thread), once for any number of concurrent
waiters, cached for a day, failures remembered with back-off, a day-old key still used while
the host is down, an unknown key id not refetched on every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.teams import KeysUnavailable, SigningKeys

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class KeyHost:
    """Metadata and JWKS on loopback; `broken` answers 500, `hold` delays every answer."""

    broken: bool = False
    hold: asyncio.Event | None = None
    hits: list[str] = field(default_factory=list)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    async def metadata(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        self.asked.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.broken:
            return web.json_response({"error": "down"}, status=500)
        assert self.server is not None
        return web.json_response({"jwks_uri": str(self.server.make_url("/keys"))})

    async def keys(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        public: dict[str, Any] = RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
        return web.json_response(
            {"keys": [{**public, "kid": "k1", "endorsements": ["msteams"]}, {"kid": 5}, "junk"]}
        )


@asynccontextmanager
async def key_host() -> AsyncIterator[tuple[KeyHost, str]]:
    host = KeyHost()
    app = web.Application()
    app.router.add_get("/meta", host.metadata)
    app.router.add_get("/keys", host.keys)
    host.server = TestServer(app, host="127.0.0.1", port=0)
    await host.server.start_server()
    try:
        yield host, str(host.server.make_url("/meta"))
    finally:
        await host.server.close()


async def test_concurrent_waiters_share_one_fetch_and_unknown_ids_do_not_refetch() -> None:
    async with key_host() as (host, url):
        host.hold = asyncio.Event()
        keys = SigningKeys(url)
        waiters = [asyncio.ensure_future(keys.key("k1")) for _ in range(25)]
        async with asyncio.timeout(5):  # the fetch is under way, every waiter waiting on it
            await host.asked.wait()
        host.hold.set()
        found = await asyncio.gather(*waiters)
        assert all(k is not None and k.endorsements == ("msteams",) for k in found)
        assert host.hits == ["/meta", "/keys"]  # one fetch for all 25
        assert await keys.key("nobody-knows-me") is None
        assert await keys.key("nobody-knows-me") is None
        assert keys.fetches == 1  # an unknown key id does not make every request refetch


async def test_failures_back_off_and_a_day_old_key_is_still_used() -> None:
    now = [1000.0]
    async with key_host() as (host, url):
        keys = SigningKeys(url, clock=lambda: now[0])
        assert await keys.key("k1") is not None
        host.broken = True
        now[0] += 25 * 3600  # a day later the keys are due again, and the host is down
        assert await keys.key("k1") is not None  # the old key still answers
        assert keys.fetches == 2
        assert await keys.key("k1") is not None
        assert keys.fetches == 2  # backing off: no new fetch
        with pytest.raises(KeysUnavailable):
            await keys.key("k2")  # nothing old to fall back on
        now[0] += 6
        with pytest.raises(KeysUnavailable):
            await keys.key("k2")
        assert keys.fetches == 3  # the back-off (5 s) passed: one more try, failed
        now[0] += 6
        with pytest.raises(KeysUnavailable):
            await keys.key("k2")
        assert keys.fetches == 3  # now 10 s: the back-off doubles
        host.broken = False
        now[0] += 10
        assert await keys.key("k1") is not None
        assert keys.fetches == 4


async def test_a_host_that_never_answers_times_out() -> None:
    async with key_host() as (host, url):
        host.hold = asyncio.Event()  # never set
        keys = SigningKeys(url, timeout=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(KeysUnavailable):
            await keys.key("k1")
        assert 0.4 < loop.time() - started < 3
        host.hold.set()


async def test_an_unknown_key_id_against_a_current_set_is_none_even_when_the_host_is_down() -> None:
    """The token names a key the issuer does not publish: the caller's fault (401), not our
    outage (503), whether the refetch it may trigger fails, hangs or is backing off."""
    now = [1000.0]
    async with key_host() as (host, url):
        keys = SigningKeys(url, timeout=0.5, clock=lambda: now[0])
        assert await keys.key("k1") is not None
        assert keys.fetches == 1
        host.broken = True
        now[0] += 301  # an unknown id may refetch now (the issuer may have rotated its keys)
        assert await keys.key("forged") is None
        assert keys.fetches == 2  # it did try, and failed
        now[0] += 6  # the 5 s back-off passed, but an unknown id refetches every 300 s only
        assert await keys.key("forged") is None
        assert keys.fetches == 2
        host.broken = False
        host.hold = asyncio.Event()  # now silent: the refetch times out
        now[0] += 301
        assert await keys.key("forged") is None
        assert keys.fetches == 3
        now[0] += 301
        host.hold.set()
        host.hold = None
        host.broken = True
        assert await keys.key("k1") is not None  # a known key never waits for a refetch
        assert keys.fetches == 3
        now[0] += 25 * 3600  # a day on: the set is no longer current, the host still down
        with pytest.raises(KeysUnavailable):
            await keys.key("forged")  # nothing current to decide with: our outage
        assert await keys.key("k1") is not None  # (a day-old key still checks its tokens)
