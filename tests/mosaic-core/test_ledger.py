"""CommitmentLedger: open/close tracking, balance, ages, anomalies reported and never raised."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mosaic.core import CommitmentLedger, EventBus, EventEnvelope, HomeostaticLoop
from mosaic.core.drives import build_drives
from mosaic.core.ledger import CLOSE_WITHOUT_OPEN, DUPLICATE_OPEN, MISSING_COMMITMENT_ID, NOTE_WITHOUT_OPEN


def message(delta, commitment_id, ts=100.0, n=0):
    return EventEnvelope(
        "Message", {"n": n}, "agent", commitment_delta=delta, commitment_id=commitment_id, ts=ts, id=f"m{n}"
    )


def test_negotiation_opens_notes_and_closes():
    ledger = CommitmentLedger(clock=lambda: 130.0)
    trace = [
        message(+1, "file", ts=100.0, n=1),  # "I will look for that file"
        message(0, "file", ts=110.0, n=2),  # "Working on it"
        message(+1, "mail", ts=120.0, n=3),
        message(0, None, ts=121.0, n=4),  # small talk
    ]
    assert ledger.consume_many(trace) == []
    assert ledger.open_count == 2 and ledger.balance == 2 and ledger.is_open("file")
    assert [c.commitment_id for c in ledger.open_commitments()] == ["file", "mail"]
    assert ledger.open_commitments()[0].notes == 1
    assert ledger.oldest_open_age() == 30.0
    assert ledger.consume(message(-1, "file", ts=125.0, n=5)) is None  # "Here is the content"
    assert ledger.open_count == 1 and ledger.oldest_open_age(now=125.0) == 5.0
    assert ledger.metrics(now=125.0) == {
        "commitment_balance": 1.0,
        "commitment_open": 1.0,
        "commitment_oldest_age_s": 5.0,
        "commitment_anomalies": 0.0,
    }
    summary = ledger.summary(now=125.0)
    assert summary["opened"] == 2 and summary["closed"] == 1 and summary["events_seen"] == 5


def test_anomalies_are_reported_never_raised():
    ledger = CommitmentLedger(anomaly_limit=2)
    kinds = [
        ledger.consume(message(-1, "ghost", n=1)).kind,
        ledger.consume(message(+1, "a", n=2)) is None and ledger.consume(message(+1, "a", n=3)).kind,
        ledger.consume(message(+1, None, n=4)).kind,
        ledger.consume(message(0, "never-opened", n=5)).kind,
    ]
    assert kinds == [CLOSE_WITHOUT_OPEN, DUPLICATE_OPEN, MISSING_COMMITMENT_ID, NOTE_WITHOUT_OPEN]
    assert ledger.anomaly_count == 4 and len(ledger.anomalies) == 2
    assert ledger.open_count == 1 and ledger.balance == 2  # -1 + 1 + 1 + 1: every delta counts
    assert "ghost" in CommitmentLedger().consume(message(-1, "ghost")).message
    assert ledger.oldest_open_age(now=50.0) == 0.0  # a clock behind the event never gives a negative age


def test_empty_ledger():
    ledger = CommitmentLedger()
    assert ledger.open_count == 0 and ledger.oldest_open_age() is None
    assert ledger.metrics()["commitment_oldest_age_s"] == 0.0


@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([None, "a", "b", "c"])), max_size=60))
def test_ledger_matches_a_plain_model_of_the_protocol(steps):
    ledger = CommitmentLedger()
    open_ids: set[str] = set()
    anomalies = 0
    for n, (delta, commitment_id) in enumerate(steps):
        ledger.consume(message(delta, commitment_id, ts=float(n), n=n))
        if commitment_id is None:
            anomalies += delta != 0
        elif delta == 1:
            anomalies += commitment_id in open_ids
            open_ids.add(commitment_id)
        elif delta == -1:
            anomalies += commitment_id not in open_ids
            open_ids.discard(commitment_id)
        else:
            anomalies += commitment_id not in open_ids
    assert ledger.open_count == len(open_ids) and ledger.anomaly_count == anomalies
    assert ledger.balance == sum(delta for delta, _ in steps)


def test_ledger_on_a_bus_feeds_the_commitment_drive():
    bus = EventBus()
    ledger = CommitmentLedger(clock=lambda: 0.0)
    bus.subscribe("*", ledger)
    for n in range(5):
        bus.publish(message(+1, f"promise-{n}", n=n))
    bus.drain()
    loop = HomeostaticLoop(build_drives({"drive.commitment_balance": {}}))
    impulse = loop.impulse(ledger.metrics(), now=0.0)
    assert impulse.payload["drive"] == "commitment_balance" and impulse.payload["value"] == 5.0
