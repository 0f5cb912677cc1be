"""Event substrate throughput against bare baselines measured in the same run.

- codec: ``EventEncoder.encode`` + ``EventDecoder.decode`` (validated envelopes, int64 ids) versus
  the bare ``json.dumps(sort_keys=True, separators=(',', ':')).encode()`` + ``torch.frombuffer``
  (widened to the same int64 ids) and its reverse (ids back to bytes, ``json.loads``) on the same
  events. The reverse uses whichever bare ids-to-bytes route is faster here. Goal: ratio >= 0.8.
- bus: ``EventBus.publish`` + ``drain`` to one handler versus a bare ``heapq`` push/pop + call
  loop ordering the same events by (-priority, arrival). Goal: ratio >= 0.5.
- bus with distinct priorities: the same comparison with 1M events (``--quick``: 50k) whose
  priorities are all different, arriving highest-first. Goal: ratio >= 0.5 (within 2x).

Rates are per CPU second of this (single-threaded) process, best of several alternating rounds:
on a shared machine wall-clock rates swing with other processes' load, CPU time does not.
"""

from __future__ import annotations

import heapq
import json
import time
from typing import Any

import torch
from harness import goal, main, rate

from mosaic.core import EventBus, EventDecoder, EventEncoder, EventEnvelope


def sample_events(count: int) -> list[EventEnvelope]:
    """A mix like a runtime's: messages with text, memory writes, tool results, impulses."""
    events = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            payload: Any = {"text": f"Bonjour — please look up file {n} for me ✓", "turn": n}
        elif kind == 1:
            payload = {"key": f"k{n}", "value": f"v{n * 7}", "slot": n % 64}
        elif kind == 2:
            payload = {"tool": "search", "ok": True, "result": [n, n + 1, n + 2], "score": 0.25 * n}
        else:
            payload = {"drive": "memory_pressure", "value": 0.91, "band": [0.0, 0.85], "urgency": 0.07}
        events.append(
            EventEnvelope(
                ("Message", "MemoryWrite", "ToolResult", "Impulse")[kind],
                payload,
                "agent" if kind != 3 else "homeostasis",
                priority=n % 3,
                commitment_delta=(0, 1, 0, -1)[kind],
                commitment_id=None if kind in (0, 2) else f"c{n}",
            )
        )
    return events


def _bare_bytes_routes() -> dict[str, Any]:
    routes = {"tolist": lambda ids: bytes(ids.tolist())}
    try:
        import numpy  # noqa: F401 — only to know whether tensor.numpy() works here

        routes["numpy"] = lambda ids: ids.to(torch.uint8).numpy().tobytes()
    except ImportError:
        pass
    return routes


def cpu_rate(fn: Any, *, items: int, min_seconds: float) -> float:
    """Items per CPU second of this process (single-threaded work), so that other processes
    competing for the cores do not count against either side."""
    fn()
    calls = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < min_seconds:
        fn()
        calls += 1
    return calls * items / elapsed if calls else 0.0


def compare(ours: Any, bare: Any, *, items: int, seconds: float, rounds: int) -> tuple[float, float]:
    """Best CPU-time rate of each, measured alternately so that drift hits both alike."""
    best_ours = best_bare = 0.0
    for _ in range(rounds):
        best_bare = max(best_bare, cpu_rate(bare, items=items, min_seconds=seconds))
        best_ours = max(best_ours, cpu_rate(ours, items=items, min_seconds=seconds))
    return best_ours, best_bare


def bare_encode(data: dict) -> torch.Tensor:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()


def bench_codec(quick: bool) -> dict[str, Any]:
    events = sample_events(256)
    dicts = [event.to_json_dict() for event in events]
    encoder, decoder = EventEncoder(), EventDecoder()
    seconds, rounds = (0.1, 2) if quick else (0.3, 5)
    encoded = [encoder.encode(event) for event in events]
    assert [decoder.decode(ids) for ids in encoded] == events
    assert all(json.loads(bytes(bare_encode(d).tolist())) == d for d in dicts)  # ASCII-escaped, same JSON
    routes = _bare_bytes_routes()
    route_rates = {
        name: rate(lambda to_bytes=to_bytes: [to_bytes(ids) for ids in encoded], min_seconds=seconds)
        for name, to_bytes in routes.items()
    }
    route = max(route_rates, key=route_rates.get)
    to_bytes = routes[route]

    def ours_round_trip() -> None:
        for event in events:
            decoder.decode(encoder.encode(event))

    def bare_round_trip() -> None:
        for data in dicts:
            json.loads(to_bytes(bare_encode(data)))

    items = len(events)
    ours, bare = compare(ours_round_trip, bare_round_trip, items=items, seconds=seconds, rounds=rounds)
    ours_enc, bare_enc = compare(
        lambda: [encoder.encode(e) for e in events], lambda: [bare_encode(d) for d in dicts],
        items=items, seconds=seconds, rounds=rounds,
    )
    ours_dec, bare_dec = compare(
        lambda: [decoder.decode(ids) for ids in encoded], lambda: [json.loads(to_bytes(ids)) for ids in encoded],
        items=items, seconds=seconds, rounds=rounds,
    )
    return {
        "mean_event_bytes": round(sum(len(ids) for ids in encoded) / len(encoded), 1),
        "round_trip_events_per_s": round(ours),
        "baseline_round_trip_events_per_s": round(bare),
        "baseline_bytes_route": route,
        "round_trip_ratio": goal(ours / bare, 0.8, at_least=True),
        "encode_ratio": round(ours_enc / bare_enc, 4),
        "decode_ratio": round(ours_dec / bare_dec, 4),
    }


def bench_bus(quick: bool) -> dict[str, Any]:
    events = sample_events(1024)
    seconds, rounds = (0.1, 2) if quick else (0.3, 5)
    calls = [0]

    def handler(event: EventEnvelope) -> None:
        calls[0] += 1

    bus = EventBus(capacity=len(events))
    bus.subscribe("*", handler)

    def ours() -> None:
        for event in events:
            bus.publish(event)
        bus.drain()

    def bare() -> None:
        heap: list[tuple[int, int, EventEnvelope]] = []
        for seq, event in enumerate(events):
            heapq.heappush(heap, (-event.priority, seq, event))
        while heap:
            handler(heapq.heappop(heap)[2])

    ours_rate, bare_rate = compare(ours, bare, items=len(events), seconds=seconds, rounds=rounds)
    return {
        "dispatch_events_per_s": round(ours_rate),
        "baseline_events_per_s": round(bare_rate),
        "dispatch_ratio": goal(ours_rate / bare_rate, 0.5, at_least=True),
    }


def bench_bus_distinct_priorities(quick: bool) -> dict[str, Any]:
    count = 50_000 if quick else 1_000_000
    events = [EventEnvelope("T", None, "s", priority=-n, id=f"e{n}", ts=1.0) for n in range(count)]

    def handler(event: EventEnvelope) -> None:
        pass

    def ours() -> None:
        bus = EventBus(capacity=count)
        bus.subscribe("*", handler)
        for event in events:
            bus.publish(event)
        bus.drain()

    def bare() -> None:
        heap: list[tuple[int, int, EventEnvelope]] = []
        for seq, event in enumerate(events):
            heapq.heappush(heap, (-event.priority, seq, event))
        while heap:
            handler(heapq.heappop(heap)[2])

    def cpu_seconds(fn: Any) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    best_ours = best_bare = float("inf")
    for _ in range(2 if quick else 3):  # alternated so that drift hits both alike
        best_bare = min(best_bare, cpu_seconds(bare))
        best_ours = min(best_ours, cpu_seconds(ours))
    return {
        "events": count,
        "seconds": round(best_ours, 3),
        "baseline_seconds": round(best_bare, 3),
        "dispatch_ratio": goal(best_bare / best_ours, 0.5, at_least=True),
    }


def run(quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    return {"codec": bench_codec(quick), "bus": bench_bus(quick),
            "bus_distinct_priorities": bench_bus_distinct_priorities(quick)}


if __name__ == "__main__":
    main(run, "events")
