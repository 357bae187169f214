"""The reply cache that makes a repeated command id act once."""

import asyncio

import pytest

from node_agent.idempotence import ReplyCache
from schemas.messages import Reply

TIMEOUT_S = 5


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def act(self) -> Reply:
        self.calls += 1
        await self.release.wait()
        return Reply(id=f"reply-{self.calls}", node="n", ok=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_repeated_id_returns_first_reply():
    cache = ReplyCache()
    counter = Counter()
    counter.release.set()

    first = await asyncio.wait_for(cache.run("c1", counter.act), TIMEOUT_S)
    second = await asyncio.wait_for(cache.run("c1", counter.act), TIMEOUT_S)

    assert second is first
    assert counter.calls == 1


async def test_concurrent_duplicates_act_once():
    cache = ReplyCache()
    counter = Counter()

    tasks = [asyncio.create_task(cache.run("c1", counter.act)) for _ in range(5)]
    await asyncio.sleep(0)
    counter.release.set()
    replies = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S)

    assert counter.calls == 1
    assert {reply.id for reply in replies} == {"reply-1"}


async def test_different_ids_act_separately():
    cache = ReplyCache()
    counter = Counter()
    counter.release.set()

    await asyncio.wait_for(cache.run("c1", counter.act), TIMEOUT_S)
    await asyncio.wait_for(cache.run("c2", counter.act), TIMEOUT_S)

    assert counter.calls == 2


async def test_expired_entry_acts_again():
    clock = FakeClock()
    cache = ReplyCache(ttl_s=600, clock=clock)
    counter = Counter()
    counter.release.set()
    await asyncio.wait_for(cache.run("c1", counter.act), TIMEOUT_S)

    clock.now += 601
    await asyncio.wait_for(cache.run("c1", counter.act), TIMEOUT_S)

    assert counter.calls == 2


async def test_oldest_entries_evicted_past_bound():
    cache = ReplyCache(max_entries=3)
    counter = Counter()
    counter.release.set()

    for index in range(5):
        await asyncio.wait_for(cache.run(f"c{index}", counter.act), TIMEOUT_S)

    assert len(cache) == 3
    assert "c0" not in cache
    assert "c4" in cache


async def test_raising_action_not_cached():
    cache = ReplyCache()

    async def fail() -> Reply:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await asyncio.wait_for(cache.run("c1", fail), TIMEOUT_S)

    assert "c1" not in cache
