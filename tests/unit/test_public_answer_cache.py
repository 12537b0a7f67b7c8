"""The cache of rendered public answers on its own: hits, single-flight, bounds, time and invalidation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from warnings_svc.web.events import RESYNC, Event
from warnings_svc.web.metrics import ServiceMetrics
from warnings_svc.web.public_cache import RISK_ONLY, PublicCache, Rendered


class Clock:
    """POSIX time that moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Renderer:
    """Counts its renders; each answer's body names the key and the render's number."""

    def __init__(self, **rendered: object) -> None:
        self.count = 0
        self.rendered = rendered
        self.gate: asyncio.Event | None = None

    def __call__(self, key: str):  # type: ignore[no-untyped-def]
        async def render() -> Rendered:
            self.count += 1
            number = self.count
            if self.gate is not None:
                await self.gate.wait()
            return Rendered(f"{key} #{number}".encode(), "text/plain", {"ETag": '"x"'}, **self.rendered)  # type: ignore[arg-type]

        return render


def _cache(**options: object) -> tuple[PublicCache, ServiceMetrics]:
    metrics = ServiceMetrics()
    cache = PublicCache(metrics, **options)  # type: ignore[arg-type]
    cache.follow(lambda: True)
    return cache, metrics


def _sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_second_request_is_served_without_rendering_again() -> None:
    cache, metrics = _cache()
    render = Renderer()
    first = await cache.answer("a", render("a"), route="r")
    again = await cache.answer("a", render("a"), route="r")
    assert again is first and render.count == 1
    assert _sample(metrics, "warnings_public_cache_hits_total", route="r") == 1
    assert _sample(metrics, "warnings_public_cache_misses_total", route="r", kind="render") == 1


async def test_concurrent_misses_for_one_key_render_once() -> None:
    cache, metrics = _cache()
    render = Renderer()
    render.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.answer("a", render("a"), route="r")) for _ in range(20)]
    await asyncio.sleep(0)
    render.gate.set()
    answers = await asyncio.gather(*waiting)
    assert render.count == 1 and all(a is answers[0] for a in answers)
    assert _sample(metrics, "warnings_public_cache_misses_total", route="r", kind="joined") == 19


async def test_a_waiter_that_goes_away_does_not_cancel_the_render_for_the_others() -> None:
    cache, _ = _cache()
    render = Renderer()
    render.gate = asyncio.Event()
    leaver = asyncio.create_task(cache.answer("a", render("a"), route="r"))
    stayer = asyncio.create_task(cache.answer("a", render("a"), route="r"))
    await asyncio.sleep(0)
    leaver.cancel()
    render.gate.set()
    assert (await stayer).body == b"a #1"
    assert len(cache) == 1


async def test_entries_are_bounded_and_the_least_recently_used_goes_first() -> None:
    cache, metrics = _cache(max_entries=3)
    render = Renderer()
    for key in ("a", "b", "c"):
        await cache.answer(key, render(key), route="r")
    await cache.answer("a", render("a"), route="r")  # a is now the most recently used
    for i in range(50):  # a client making up query strings
        await cache.answer(f"junk{i}", render(f"junk{i}"), route="r")
    assert len(cache) == 3
    assert _sample(metrics, "warnings_public_cache_evictions_total") == 50
    await cache.answer("junk49", render("junk49"), route="r")
    assert render.count == 53  # junk49 was still there ...
    await cache.answer("a", render("a"), route="r")
    assert render.count == 54  # ... and a long gone


async def test_bytes_are_bounded_too() -> None:
    cache, _ = _cache(max_bytes=4000)
    render = Renderer()
    for i in range(100):
        await cache.answer(f"k{i:03}" + "x" * 200, render(f"k{i:03}" + "x" * 200), route="r")
    assert 0 < cache.size_bytes <= 4000 and len(cache) < 100


async def test_an_answer_goes_when_its_moment_passes_without_any_event() -> None:
    clock = Clock()
    cache, metrics = _cache(clock=clock)
    expiry = datetime.fromtimestamp(clock.now + 60, UTC)
    render = Renderer(valid_until=expiry)
    await cache.answer("a", render("a"), route="r")
    clock.now += 59.9
    assert (await cache.answer("a", render("a"), route="r")).body == b"a #1"
    clock.now += 0.1
    assert (await cache.answer("a", render("a"), route="r")).body == b"a #2"
    assert _sample(metrics, "warnings_public_cache_invalidations_total", reason="time") == 1


async def test_a_warning_event_drops_what_warnings_make_and_keeps_stored_documents() -> None:
    cache, metrics = _cache()
    lists, documents, pages = Renderer(), Renderer(depends_on=frozenset()), Renderer(depends_on=RISK_ONLY)
    await cache.answer("list", lists("list"), route="r")
    await cache.answer("cap", documents("cap"), route="r")
    await cache.answer("page", pages("page"), route="r")
    cache.on_event(Event("warning", {"kind": "warning", "id": 1}))
    cache.on_event(Event("proposal", {"kind": "proposal", "id": 1}))  # nothing public
    for key, renderer in (("list", lists), ("cap", documents), ("page", pages)):
        await cache.answer(key, renderer(key), route="r")
    assert (lists.count, documents.count, pages.count) == (2, 1, 1)
    assert _sample(metrics, "warnings_public_cache_invalidations_total", reason="warning") == 1


async def test_a_resync_drops_everything() -> None:
    cache, metrics = _cache()
    documents = Renderer(depends_on=frozenset())
    await cache.answer("cap", documents("cap"), route="r")
    cache.on_event(Event(RESYNC, {"kind": RESYNC}))
    await cache.answer("cap", documents("cap"), route="r")
    assert documents.count == 2
    assert _sample(metrics, "warnings_public_cache_invalidations_total", reason="resync") == 1


async def test_a_render_that_overlapped_a_change_is_answered_but_not_kept() -> None:
    cache, _ = _cache()
    render = Renderer()
    render.gate = asyncio.Event()
    early = asyncio.create_task(cache.answer("a", render("a"), route="r"))
    await asyncio.sleep(0)
    cache.on_event(Event("warning", {"kind": "warning", "id": 1}))  # it may have read the old state
    late = asyncio.create_task(cache.answer("a", render("a"), route="r"))  # must not join the old render
    await asyncio.sleep(0)
    render.gate.set()
    assert (await early).body == b"a #1"
    assert (await late).body == b"a #2"
    assert (await cache.answer("a", render("a"), route="r")).body == b"a #2"  # the second was kept


async def test_while_changes_cannot_be_heard_every_request_renders_and_nothing_is_kept() -> None:
    cache, metrics = _cache()
    listening = False
    cache.follow(lambda: listening)
    render = Renderer()
    await cache.answer("a", render("a"), route="r")
    await cache.answer("a", render("a"), route="r")
    assert render.count == 2 and len(cache) == 0
    assert _sample(metrics, "warnings_public_cache_misses_total", route="r", kind="bypass") == 2
    listening = True
    await cache.answer("a", render("a"), route="r")
    await cache.answer("a", render("a"), route="r")
    assert render.count == 3


async def test_a_failed_render_is_not_kept_and_every_waiter_gets_its_error() -> None:
    cache, _ = _cache()
    calls = 0

    async def failing() -> Rendered:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise LookupError("no such alert")

    results = await asyncio.gather(
        *(cache.answer("a", failing, route="r") for _ in range(3)), return_exceptions=True
    )
    assert calls == 1 and all(isinstance(r, LookupError) for r in results)
    assert len(cache) == 0
    await asyncio.gather(cache.answer("a", failing, route="r"), return_exceptions=True)
    assert calls == 2
