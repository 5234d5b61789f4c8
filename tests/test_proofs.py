"""Proofs a stranger can check (ledger/proofs.py): signed checkpoints binding the snapshot, a log extending
an older signed tree (and a rollback or a fork refused), consistency proofs, inclusion bundles checked
offline (every byte of one flipped; lines that are in the tree but not the entry's refused), witness
cosignatures, and damaged tree files never giving a wrong proof."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import EntryNotFoundError, NoteError, ProofError
from ledger.memory import MemoryStore
from ledger.merkle import CompactRange, leaf_hash, root, verify_consistency
from ledger.note import COSIGNATURE, Checkpoint, Signer, generate_key, open_note, sign
from ledger.proofs import SNAPSHOT_EXTENSION, encode_bundle, verify_bundle
from ledger.tree import HEADER_SIZE, KEYS_NAME, PAGE_SIZE, TREE_NAME, UNIT, node_slot

from .conftest import FakeClock, entry
from .pg import OnPostgres

ORIGIN = "ledger.example/videos"


def write_some(ledger: Ledger, n: int, *, spots: int = 5) -> None:
    start = ledger.head().seq
    for i in range(n):
        ledger.set_video_metadata(entry(f"spot-{i % spots}", "era", status="pending", prompt=f"p{start + i}"))


def log_lines(directory: Path) -> list[bytes]:
    return (directory / "events.jsonl").read_bytes().split(b"\n")[:-1]


@pytest.fixture
def key() -> Signer:
    return generate_key(ORIGIN)


def test_a_signed_checkpoint_is_the_logs_tree_and_binds_the_snapshot(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 17)
        signed = ledger.proofs().sign(key)
    checkpoint = Checkpoint.parse(open_note(signed, [key.verifier]).text)
    assert checkpoint.origin == ORIGIN and checkpoint.size == 17
    assert checkpoint.root == root([leaf_hash(line) for line in log_lines(tmp_path)])
    snapshot = hashlib.sha256((tmp_path / "generated-videos.json").read_bytes()).hexdigest()
    assert checkpoint.extensions == (SNAPSHOT_EXTENSION + snapshot,)
    assert (tmp_path / "merkle.note").read_bytes() == signed


def test_a_snapshot_behind_the_tree_is_not_bound(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 3)
    with Ledger(tmp_path, clock=FakeClock(), projection="deferred") as ledger:
        write_some(ledger, 2)  # recorded, the snapshot not written
        signed = ledger.proofs().sign(key, origin="other.example/log")
    checkpoint = Checkpoint.parse(open_note(signed, [key.verifier]).text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("other.example/log", 5, ())


def test_the_log_extends_an_older_signed_tree_without_a_replay(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 10)
        old = ledger.proofs().sign(key)
        write_some(ledger, 23)
        extension = ledger.proofs().extends(old, [key.verifier])
        assert (extension.old.size, extension.size) == (10, 33)
        verify_consistency(10, 33, extension.old.root, extension.root, extension.proof)
        assert ledger.proofs().extends(old, [key.verifier], full=True).root == extension.root
        # the same tree: nothing to prove
        same = ledger.proofs().sign(key)
        assert ledger.proofs().extends(same, [key.verifier]).proof == []
        assert ledger.verify(expect_head=f"{ledger.head().seq}:{ledger.head().hash}").ok  # kept working


def test_an_older_note_that_does_not_check_is_refused(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 4)
        old = ledger.proofs().sign(key)
        with pytest.raises(NoteError):
            ledger.proofs().extends(old.replace(b"\n4\n", b"\n3\n"), [key.verifier])
        with pytest.raises(NoteError):
            ledger.proofs().extends(old, [generate_key(ORIGIN).verifier])


def test_a_rolled_back_log_is_refused(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 12)
        old = ledger.proofs().sign(key)
    lines = log_lines(tmp_path)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines[:8]) + b"\n")
    (tmp_path / "events.jsonl.sync.lock").unlink(missing_ok=True)
    (tmp_path / "checkpoint.json").unlink()
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        with pytest.raises(ProofError, match="rolled back"):
            ledger.proofs().extends(old, [key.verifier])
        with pytest.raises(ProofError, match="rolled back"):
            ledger.proofs().sign(key)  # a log never signs a tree inconsistent with one it signed


def _forked(tmp_path: Path, key: Signer, n: int) -> tuple[Path, bytes]:
    """A log of 10 records whose signed checkpoint is kept, then replaced by another history of ``n``."""
    with Ledger(tmp_path / "log", clock=FakeClock()) as ledger:
        write_some(ledger, 10)
        old = ledger.proofs().sign(key)
    with Ledger(tmp_path / "other", clock=FakeClock()) as other:
        write_some(other, n, spots=3)
    for name in ("events.jsonl", "checkpoint.json", "generated-videos.json"):
        shutil.copy(tmp_path / "other" / name, tmp_path / "log" / name)
    (tmp_path / "log" / "events.jsonl.sync.lock").unlink(missing_ok=True)
    return tmp_path / "log", old


@pytest.mark.parametrize("n", [10, 25])
def test_a_forked_log_is_refused(tmp_path: Path, key: Signer, n: int) -> None:
    directory, old = _forked(tmp_path, key, n)
    with Ledger(directory, clock=FakeClock()) as ledger:
        with pytest.raises(ProofError, match="a fork"):
            ledger.proofs().extends(old, [key.verifier])
        with pytest.raises(ProofError, match="a fork"):
            ledger.proofs().sign(key)


def test_consistency_proofs_between_any_two_sizes(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 37)
        proofs = ledger.proofs()
        leaves = [leaf_hash(line) for line in log_lines(tmp_path)]
        for old in range(1, 38, 3):
            for new in range(old, 38, 5):
                old_root, new_root, proof = proofs.consistency(old, new)
                assert (old_root, new_root) == (root(leaves[:old]), root(leaves[:new]))
                verify_consistency(old, new, old_root, new_root, proof)
        with pytest.raises(ProofError):
            proofs.consistency(5, 38)
        with pytest.raises(ProofError):
            proofs.consistency(6, 5)


def test_a_bundle_proves_the_entry_offline(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 20, spots=4)
        job = ledger.begin_attempt("spot-1", "era", "a prompt")
        ledger.mark_video_ready("spot-1", "era", "videos/a.mp4", attempt=job.attempt)
        write_some(ledger, 9, spots=3)
        bundle = ledger.proofs().prove("spot-1", "era", signer=key)
        want = ledger.get_video_metadata("spot-1", "era")
    data = encode_bundle(bundle)
    proven = verify_bundle(data, [key.verifier])
    assert proven.entry == want
    assert [e.seq for e in proven.events] == [r.index + 1 for r in bundle.records]
    assert proven.checkpoint.size == 31
    lines = log_lines(tmp_path)
    assert [r.line.encode() for r in bundle.records] == [lines[r.index] for r in bundle.records]


def test_every_flipped_byte_of_a_bundle_is_rejected(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 13, spots=6)
        data = encode_bundle(ledger.proofs().prove("spot-2", "era", signer=key))
    verify_bundle(data, [key.verifier])
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= 0x01
        with pytest.raises((ProofError, NoteError)):
            verify_bundle(bytes(changed), [key.verifier])


def _bundle(data: bytes) -> dict[str, object]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def test_a_bundle_with_another_size_is_refused(tmp_path: Path, key: Signer) -> None:
    """The trap: a proof for size n checks against size n + 1 with the same root for many n, so size and
    root come together from the one signed checkpoint; a checkpoint with another size is not signed."""
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 3, spots=3)
        bundle = _bundle(encode_bundle(ledger.proofs().prove("spot-0", "era", signer=key)))
    note = str(bundle["checkpoint"])
    bundle["checkpoint"] = note.replace(f"{ORIGIN}\n3\n", f"{ORIGIN}\n4\n")
    with pytest.raises(NoteError, match="does not check"):
        verify_bundle(json.dumps(bundle).encode(), [key.verifier])
    # re-signed by another key of the same name: not the log's key
    text = note[: note.rindex("\n\n") + 1].replace(f"{ORIGIN}\n3\n", f"{ORIGIN}\n4\n").encode()
    bundle["checkpoint"] = sign(text, generate_key(ORIGIN)).decode()
    with pytest.raises(NoteError, match="no signature"):
        verify_bundle(json.dumps(bundle).encode(), [key.verifier])


def test_lines_in_the_tree_but_not_the_entrys_are_refused(tmp_path: Path, key: Signer) -> None:
    """Verifying the tree without the values passes tampered data: a line of another entry, with its own
    correct proof, is in the tree, and still refused as the entry's."""
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 12, spots=3)
        proofs = ledger.proofs()
        mine = _bundle(encode_bundle(proofs.prove("spot-0", "era", signer=key)))
        theirs = _bundle(encode_bundle(proofs.prove("spot-1", "era")))
    swapped = dict(mine, records=theirs["records"])
    with pytest.raises(ProofError, match="not the bundle's entry"):
        verify_bundle(json.dumps(swapped).encode(), [key.verifier])
    records = list(mine["records"])  # type: ignore[call-overload]
    moved = dict(records[0], index=records[0]["index"] + 1)
    with pytest.raises(ProofError):
        verify_bundle(json.dumps(dict(mine, records=[moved, *records[1:]])).encode(), [key.verifier])
    with pytest.raises(ProofError, match="increasing"):
        verify_bundle(json.dumps(dict(mine, records=records[::-1])).encode(), [key.verifier])
    with pytest.raises(ProofError, match="no record"):
        verify_bundle(json.dumps(dict(mine, records=[])).encode(), [key.verifier])


def test_prove_against_the_last_signed_checkpoint_leaves_later_records_out(
    tmp_path: Path, key: Signer
) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 6, spots=2)
        proofs = ledger.proofs()
        with pytest.raises(NoteError, match="no checkpoint was signed"):
            proofs.prove("spot-0", "era")
        proofs.sign(key)
        write_some(ledger, 4, spots=2)
        bundle = proofs.prove("spot-0", "era")
        assert [r.index for r in bundle.records] == [0, 2, 4]
        with pytest.raises(EntryNotFoundError):
            proofs.prove("nobody", "era")
    assert verify_bundle(encode_bundle(bundle), [key.verifier]).checkpoint.size == 6


def test_a_bundle_on_the_memory_store(tmp_path: Path, key: Signer) -> None:
    with Ledger(tmp_path, store=MemoryStore(), clock=FakeClock()) as ledger:
        write_some(ledger, 9, spots=2)
        proven = verify_bundle(
            encode_bundle(ledger.proofs().prove("spot-1", "era", signer=key)), [key.verifier]
        )
        assert proven.entry == ledger.get_video_metadata("spot-1", "era")


@pytest.mark.parametrize("where", ["interior node", "leaf", "index"])
def test_damaged_tree_files_never_give_a_wrong_proof(
    tmp_path: Path, key: Signer, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 22, spots=4)
        signed = ledger.proofs().sign(key)
        write_some(ledger, 5, spots=4)
    tree = tmp_path / TREE_NAME
    data = bytearray(tree.read_bytes())
    if where == "index":
        index = bytearray((tmp_path / "merkle.index").read_bytes())
        for i in range(0, len(index), 16):
            index[i : i + 8] = (26).to_bytes(8, "little")  # every record read after record 26: missed
        (tmp_path / "merkle.index").write_bytes(index)
    else:
        slot = node_slot(1, 1) if where == "interior node" else node_slot(0, 1)  # on spot-1's paths
        assert (1, 1) not in CompactRange.peak_ids(27)
        data[HEADER_SIZE + 32 * slot] ^= 0x40
        tree.write_bytes(data)
    with Ledger(tmp_path, clock=FakeClock()) as ledger, caplog.at_level(logging.WARNING, logger="ledger"):
        proofs = ledger.proofs()
        extension = proofs.extends(signed, [key.verifier])
        verify_consistency(22, 27, extension.old.root, extension.root, extension.proof)
        proven = verify_bundle(encode_bundle(proofs.prove("spot-1", "era", signer=key)), [key.verifier])
        assert proven.entry == ledger.get_video_metadata("spot-1", "era")
        assert [e.seq for e in proven.events] == [e.seq for e in ledger.history("spot-1")]
    assert any("does not check" in r.getMessage() for r in caplog.records)


def _units(ledger: Ledger, units: int) -> None:
    """``units * UNIT`` events over spot-0..spot-3, one bulk write a unit."""
    for _ in range(units):
        start = ledger.head().seq
        ledger.set_many(
            [entry(f"spot-{i % 4}", "era", status="pending", prompt=f"b{start + i}") for i in range(UNIT)]
        )


@pytest.mark.parametrize("damage", ["a byte of each page", "zeroed", "an older state", "another log's"])
def test_a_stale_or_damaged_entry_index_never_hides_a_record(
    tmp_path: Path, key: Signer, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = tmp_path / "log" / KEYS_NAME
    with Ledger(tmp_path / "log", clock=FakeClock()) as ledger:
        _units(ledger, 5)  # the index: units 0-3 sorted together, unit 4 alone
        older = keys.read_bytes()
        _units(ledger, 1)  # units 4-5 now sorted together, where units 0-1 once were
        write_some(ledger, 9, spots=4)
    if damage == "an older state":
        keys.write_bytes(older)  # every subtree it holds is whole, one of them not this tree's
    elif damage == "another log's":
        with Ledger(tmp_path / "other", clock=FakeClock(step=dt.timedelta(seconds=1))) as other:
            _units(other, 6)
            write_some(other, 9, spots=3)
        shutil.copy(tmp_path / "other" / KEYS_NAME, keys)
    else:
        data = bytearray(keys.read_bytes())
        for at in range(0, len(data), PAGE_SIZE):
            if damage == "zeroed":
                data[at : at + PAGE_SIZE] = bytes(len(data[at : at + PAGE_SIZE]))
            else:
                data[at + 5] ^= 0x10
        keys.write_bytes(data)
    with (
        Ledger(tmp_path / "log", clock=FakeClock()) as ledger,
        caplog.at_level(logging.WARNING, logger="ledger"),
    ):
        proven = verify_bundle(
            encode_bundle(ledger.proofs().prove("spot-1", "era", signer=key)), [key.verifier]
        )
        assert [e.seq for e in proven.events] == [e.seq for e in ledger.history("spot-1")]
        assert len(proven.events) == 6 * UNIT // 4 + 2
    assert any("does not check" in r.getMessage() for r in caplog.records)


def test_a_witness_cosigns_only_a_consistent_checkpoint(tmp_path: Path, key: Signer) -> None:
    witness = generate_key("witness.example/w1", COSIGNATURE)
    state = tmp_path / "witness.state"
    with Ledger(tmp_path / "log", clock=FakeClock()) as ledger:
        proofs = ledger.proofs()
        write_some(ledger, 7)
        proofs.sign(key)
        first = proofs.cosign(witness, key.verifier, state)
        open_note(first, [key.verifier, witness.verifier], need=2)
        write_some(ledger, 9)
        proofs.sign(key)  # the log's note now: 16 records, extending the 7 the witness saw
        second = proofs.cosign(witness, key.verifier, state)
        assert Checkpoint.parse(open_note(second, [key.verifier, witness.verifier], need=2).text).size == 16
        assert (tmp_path / "log" / "merkle.note").read_bytes() == second
        bundle = proofs.prove("spot-2", "era")  # carries the cosignature
        verify_bundle(encode_bundle(bundle), [key.verifier, witness.verifier])
        with pytest.raises(ProofError, match="rollback"):
            proofs.cosign(witness, key.verifier, state, first)
        with pytest.raises(NoteError):
            proofs.cosign(witness, generate_key(ORIGIN).verifier, state)  # not the log's key


def test_a_witness_refuses_a_host_that_rewrote_its_log(tmp_path: Path, key: Signer) -> None:
    witness = generate_key("witness.example/w1", COSIGNATURE)
    state = tmp_path / "witness.state"
    with Ledger(tmp_path / "log", clock=FakeClock()) as ledger:
        write_some(ledger, 10)
        ledger.proofs().sign(key)
        ledger.proofs().cosign(witness, key.verifier, state)
    with Ledger(tmp_path / "other", clock=FakeClock()) as other:
        write_some(other, 14, spots=3)
    for name in ("events.jsonl", "checkpoint.json", "generated-videos.json"):
        shutil.copy(tmp_path / "other" / name, tmp_path / "log" / name)
    (tmp_path / "log" / "merkle.note").unlink()  # the host forgets what it signed, and signs the rewrite
    with Ledger(tmp_path / "log", clock=FakeClock()) as ledger:
        rewritten = ledger.proofs().sign(key)
        with pytest.raises(ProofError, match="a fork"):
            ledger.proofs().cosign(witness, key.verifier, state, rewritten)
    assert b"witness.example" in state.read_bytes() and b"\n10\n" in state.read_bytes()


class TestOnPostgres(OnPostgres):
    def test_sign_extend_and_prove_over_postgres(self, tmp_path: Path, key: Signer) -> None:
        with Ledger(tmp_path, store=self.create_store(), clock=FakeClock()) as ledger:
            write_some(ledger, 9, spots=3)
            old = ledger.proofs().sign(key)
            write_some(ledger, 140, spots=3)  # past the projector's step: the tree kept up on the way
            assert ledger.proofs().extends(old, [key.verifier]).size == 149
            proven = verify_bundle(
                encode_bundle(ledger.proofs().prove("spot-1", "era", signer=key)), [key.verifier]
            )
            assert proven.entry == ledger.get_video_metadata("spot-1", "era")
            assert [e.seq for e in proven.events] == [e.seq for e in ledger.history("spot-1")]
