"""Properties of the fold and the log, over random sequences of changes (hypothesis, real files)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from ledger import IllegalTransitionError, InvalidEntryError, Ledger, VideoMetadata, lifecycle
from ledger.events import (
    EVENT_TYPES,
    FORMAT_VERSION,
    GENESIS_HASH,
    STATUSES,
    EventType,
    Failed,
    Imported,
    Ready,
)
from ledger.projector import encode_snapshot
from projections import entries as entries_module
from projections.entries import Entries, apply, fold

from .conftest import FakeClock

keys = st.tuples(
    st.sampled_from(["colosseum", "akropolis", "紫禁城"]), st.sampled_from(["rome", "athens-430bc"])
)


@st.composite
def change(draw: st.DrawFn) -> tuple[tuple[str, str], str, str, str | None, str | None]:
    """A change that is valid in itself; about one in ten breaks a rule on purpose."""
    status = draw(st.sampled_from(STATUSES))
    prompt = draw(st.sampled_from(["a prompt", "another\nprompt", ""]))
    path = draw(st.sampled_from(["videos/a.mp4", "videos/b.mp4", None]))
    error = draw(st.sampled_from(["timeout", "OOM: ran out of memory"])) if status == "failed" else None
    if status == "ready" and path is None and draw(st.integers(0, 9)):
        path = "videos/c.mp4"
    return draw(keys), status, prompt, path, error


changes = st.lists(change(), max_size=40)


def _apply_all(
    directory: Path, steps: list[tuple[tuple[str, str], str, str, str | None, str | None]]
) -> Ledger:
    ledger = Ledger(directory, clock=FakeClock())
    for (spot, era), status, prompt, path, error in steps:
        try:
            ledger.set_video_metadata(
                VideoMetadata(
                    spot_id=spot, era_id=era, status=status, prompt=prompt, local_path=path, error=error
                )  # type: ignore[arg-type]
            )
        except (IllegalTransitionError, InvalidEntryError):
            pass  # refused changes must leave no trace; the properties below would catch one
    return ledger


@given(changes)
def test_incremental_snapshot_equals_replay_and_rebuild(steps: list) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ledger = _apply_all(directory, steps)
        kept = (directory / "generated-videos.json").read_bytes()
        events = list(ledger.history())
        assert encode_snapshot(fold(events)) == kept
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert ledger.verify().ok
        ledger.rebuild()
        assert (directory / "generated-videos.json").read_bytes() == kept
        reopened = Ledger(directory, readonly=True)
        assert reopened.get_all_video_metadata() == ledger.get_all_video_metadata()


@given(changes, st.integers(0, 40))
def test_folding_in_two_parts_equals_folding_at_once(steps: list, split: int) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        events = list(_apply_all(Path(tmp), steps).history())
    whole = fold(events)
    in_parts = fold(events[split:], fold(events[:split]))
    assert in_parts == whole


@given(changes.filter(lambda s: len(s) > 3), st.data())
def test_any_one_byte_change_is_caught_by_verify(steps: list, data: st.DataObject) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _apply_all(directory, steps)
        log = directory / "events.jsonl"
        raw = bytearray(log.read_bytes())
        if not raw:
            return
        i = data.draw(st.integers(0, len(raw) - 1), label="offset")
        raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]), label="byte")
        log.write_bytes(bytes(raw))
        report = Ledger(directory, readonly=True).verify()
        assert not report.ok, f"changing byte {i} went unnoticed"


def test_entries_round_trip_through_the_snapshot_format() -> None:
    item = VideoMetadata(
        spot_id="s", era_id="e", prompt='p\n"q"', status="ready", local_path="x", created_at="t"
    )
    data = encode_snapshot({item.key: item})
    assert msgspec.json.decode(data, type=list[VideoMetadata]) == [item]


@given(changes)
def test_the_incremental_snapshot_encoder_gives_the_reference_bytes(steps: list) -> None:  # type: ignore[type-arg]
    from ledger.projector import SnapshotEncoder

    with tempfile.TemporaryDirectory() as tmp:
        events = list(_apply_all(Path(tmp), steps).history())
    encoder, told = SnapshotEncoder(), SnapshotEncoder()
    state: dict[tuple[str, str], VideoMetadata] = {}
    for event in events:
        state[event.key] = apply(state.get(event.key), event)
        assert encoder.encode(state) == encode_snapshot(state)
        assert told.encode(state, changed={event.key}) == encode_snapshot(state)  # told what changed


@given(
    st.lists(st.tuples(st.text("abcz", min_size=1, max_size=3), st.sampled_from(["p", "q"])), max_size=200)
)
def test_the_snapshot_encoder_with_keys_arriving_in_any_order(arrivals: list[tuple[str, str]]) -> None:
    from ledger.projector import SnapshotEncoder

    encoder = SnapshotEncoder()
    state: dict[tuple[str, str], VideoMetadata] = {}
    for spot, prompt in arrivals:
        state[(spot, "e")] = VideoMetadata(spot_id=spot, era_id="e", prompt=prompt, status="pending")
        assert encoder.encode(state) == encode_snapshot(state)


@st.composite
def any_event(draw: st.DrawFn) -> EventType:
    """Any event at all, legal or not where it lands: the fold must match the plain loop on every log the
    scan accepts, and the scan does not check the lifecycle."""
    spot, era = draw(keys)
    kind = draw(st.sampled_from(["pending", "generating", "ready", "failed", "imported"]))
    prompt = draw(st.sampled_from(["a prompt", "another\nprompt", ""]))
    path = draw(st.sampled_from(["videos/a.mp4", "videos/b.mp4", None]))
    ts = f"2026-11-24T09:00:{draw(st.integers(0, 59)):02d}.000000Z"
    envelope = (FORMAT_VERSION, 1, ts, spot, era, GENESIS_HASH)
    if kind in ("pending", "generating"):
        return EVENT_TYPES[kind](*envelope, prompt=prompt, local_path=path)  # type: ignore[call-arg]
    if kind == "ready":
        return Ready(*envelope, local_path=path or "videos/c.mp4")
    if kind == "failed":
        return Failed(*envelope, error="timeout")
    return Imported(
        *envelope,
        status=draw(st.sampled_from(STATUSES)),
        prompt=prompt,
        local_path=path,
        error=draw(st.sampled_from(["timeout", None])),
        created_at="2025-01-01T00:00:00.000000Z",
        completed_at=draw(st.sampled_from(["2025-01-02T00:00:00.000000Z", None])),
    )


@given(st.lists(any_event(), max_size=60), st.lists(any_event(), max_size=10), st.integers(1, 9))
def test_the_fold_equals_applying_each_event_in_turn(
    events: list[EventType], earlier: list[EventType], run: int
) -> None:
    def plain(events: list[EventType], state: Entries) -> Entries:
        for event in events:
            state[event.key] = apply(state.get(event.key), event)
        return state

    assert fold(events) == plain(events, {})
    assert fold(events, plain(earlier, {})) == plain(events, plain(earlier, {}))
    # the lazy path for any count, with runs shorter than the events (the state carries from run to run)
    saved = entries_module._RUN, entries_module._FEW
    entries_module._RUN, entries_module._FEW = run, 0  # type: ignore[misc]
    try:
        assert fold(events) == plain(events, {})
        assert fold(events, plain(earlier, {})) == plain(events, plain(earlier, {}))
    finally:
        entries_module._RUN, entries_module._FEW = saved  # type: ignore[misc]
    # runs handed over with their keys (as rebuild's lifecycle check passes them), cut anywhere
    runs = [events[i : i + run] for i in range(0, len(events), run)]
    keyed = entries_module.KeyedRuns(([event.key for event in r], r) for r in runs)
    assert fold(keyed, plain(earlier, {})) == plain(events, plain(earlier, {}))


@st.composite
def mostly_lawful(draw: st.DrawFn) -> list[EventType]:
    """Events on a few entries that mostly follow the lifecycle, with now and then one that does not (so a
    run often holds exactly one illegal change), and imports now and then."""
    statuses: dict[tuple[str, str], str | None] = {}
    events: list[EventType] = []
    template = Ready(FORMAT_VERSION, 1, "2026-11-24T09:00:00.000000Z", "s", "e", GENESIS_HASH, local_path="v")
    for _ in range(draw(st.integers(0, 60))):
        key = (draw(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])), "e")
        allowed = sorted(lifecycle.TRANSITIONS[statuses.get(key)])  # type: ignore[index]
        if draw(st.integers(0, 19)) == 0:
            kind = draw(st.sampled_from(["pending", "generating", "ready", "failed", "imported"]))
        else:
            kind = draw(st.sampled_from(allowed))
        event = _as(msgspec.structs.replace(template, spot_id=key[0]), kind)
        statuses[key] = event.status if isinstance(event, Imported) else event.STATUS
        events.append(event)
    return events


@given(mostly_lawful(), st.lists(any_event(), max_size=10), st.integers(0, 12))
def test_the_lifecycle_check_of_a_run_finds_what_the_event_by_event_check_finds(
    events: list[EventType], earlier: list[EventType], hot: int
) -> None:
    """``first_illegal`` checks many events at once (in layers, one per event of the same entry); it
    answers as the loop over the table does, index and statuses after, for any events: legal ones, illegal
    ones, imports, one event per entry, and an entry with more events in the run than there are layers."""
    statuses: dict[tuple[str, str], str] = {}
    for event in earlier:  # a state before the run
        statuses[event.key] = event.status if isinstance(event, Imported) else event.STATUS
    spot = Ready(FORMAT_VERSION, 1, "2026-11-24T09:00:00.000000Z", "hot", "x", GENESIS_HASH, local_path="v")
    hot_tail = [_as(spot, ["pending", "generating", "ready"][i % 3]) for i in range(hot * 3)]
    plain = [e for e in events if not isinstance(e, Imported)]

    def loop(events: list[EventType], statuses: dict[tuple[str, str], str]) -> int | None:
        for i, event in enumerate(events):
            before = statuses.get(event.key)
            if isinstance(event, Imported):
                if before is not None:
                    return i
                statuses[event.key] = event.status
            elif not lifecycle.is_legal(before, event.STATUS):  # type: ignore[arg-type]
                return i
            else:
                statuses[event.key] = event.STATUS
        return None

    olds = list(statuses.values()) or [None]
    unique = [msgspec.structs.replace(e, spot_id=f"u{i}") for i, e in enumerate(plain)]  # one event each
    for i, event in enumerate(unique):
        if i % 3 and olds[i % len(olds)] is not None:
            statuses[event.key] = olds[i % len(olds)]
    for part in (unique, plain, plain + hot_tail, events, events + hot_tail):
        want = dict(statuses)
        got = dict(statuses)
        assert lifecycle.first_illegal(part, got) == loop(part, want)  # type: ignore[arg-type]
        assert got == want


def _as(template: EventType, kind: str) -> EventType:
    envelope = (FORMAT_VERSION, 1, template.ts, template.spot_id, template.era_id, GENESIS_HASH)
    if kind in ("pending", "generating"):
        return EVENT_TYPES[kind](*envelope, prompt="p", local_path=None)  # type: ignore[call-arg]
    if kind == "ready":
        return Ready(*envelope, local_path="v")
    if kind == "failed":
        return Failed(*envelope, error="timeout")
    return Imported(*envelope, status="pending", prompt="p", created_at=template.ts)


@given(
    st.lists(
        st.tuples(st.integers(0, 15), st.integers(0, 6), st.booleans(), st.booleans()),
        min_size=5,
        max_size=120,
    ),
    st.integers(1, 5),
)
def test_the_snapshot_encoder_splices_changed_entries_into_its_bytes(
    steps: list[tuple[int, int, bool, bool]], block: int
) -> None:
    """The encoder keeps the snapshot's bytes and splices each changed entry into them (its offset from
    per-block byte counts; a longer or shorter entry moves what follows): the bytes stay the reference
    ones, told what changed or not, with small blocks so that offsets cross many of them."""
    from ledger import projector as snapshot

    saved = snapshot._BLOCK, snapshot._SPLICES
    snapshot._BLOCK, snapshot._SPLICES = block, 3  # type: ignore[misc]
    try:
        encoder, told = snapshot.SnapshotEncoder(), snapshot.SnapshotEncoder()
        state: dict[tuple[str, str], VideoMetadata] = {}
        for number, size, tell, burst in steps:
            changed = set()
            for n in (number, number + 1, number + 7, number + 13) if burst else (number,):
                key = (f"s{n:02d}", "e")
                state[key] = VideoMetadata(spot_id=key[0], era_id="e", prompt="ab\n" * size, status="pending")
                changed.add(key)
            assert encoder.encode(state) == snapshot.encode_snapshot(state)
            assert told.encode(state, changed if tell else None) == snapshot.encode_snapshot(state)
    finally:
        snapshot._BLOCK, snapshot._SPLICES = saved  # type: ignore[misc]
