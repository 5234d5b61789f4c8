"""PostgreSQL under a fleet's faults: writer processes append while writers are killed, their sessions
terminated (``pg_terminate_backend``) and the server crashed and restarted (``pg_ctl -m immediate``).

Every acknowledged event must be there exactly once, and every error a writer saw must have told the
truth: each writer logs each append's marker, outcome and error text; afterwards an error that said
nothing was recorded has no row, an acknowledged append exactly one, and one in doubt at most one."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from .conftest import PYTHON, ROOT, Tally
from .pg import PgServer, require_psycopg, superuser_url

require_psycopg()

import psycopg  # noqa: E402

from ledger.postgres import PostgresStore  # noqa: E402

# One append per loop, its event's era the marker "NAME-N"; the outcome logged after the append returns or
# raises. A kill between the two leaves the marker without an outcome: nothing is said, either is true.
WRITER = """
import json, sys, time
from ledger.backend import Head
from ledger.errors import DurabilityError, LedgerError
from ledger.events import FORMAT_VERSION, Pending, encode_line
from ledger.postgres import PostgresStore
from ledger.backend import Record

url, name, log = sys.argv[1], sys.argv[2], open(sys.argv[3], "a")
store, n = None, 0
while True:
    n += 1
    marker = f"{name}-{n}"
    def decide(tip, unseen, marker=marker):
        event = Pending(
            v=FORMAT_VERSION, seq=tip.seq + 1, ts=max("2026-11-24T09:00:00.000000Z", tip.ts),
            spot_id=name, era_id=marker, prev=tip.hash, prompt="chaos",
        )
        return [Record(tip.seq + 1, encode_line(event)[:-1], event)]
    while store is None:  # no append yet: a server that is restarting is waited for
        try:
            store = PostgresStore(url, retry_for=20)
        except LedgerError:
            time.sleep(0.1)
    outcome = {"marker": marker}
    try:
        store.append(store.head(), decide)
        outcome["outcome"] = "ok"
    except LedgerError as exc:
        outcome.update(outcome="error", type=type(exc).__name__, text=str(exc),
                       doubt=isinstance(exc, DurabilityError))
        store.close() if store is not None else None
        store = None
    log.write(json.dumps(outcome) + "\\n")
    log.flush()
"""


def _spawn(url: str, name: str, logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.err").open("ab") as err:  # the child holds its own copy
        return subprocess.Popen(
            [PYTHON, "-c", WRITER, url, name, str(logs / f"{name}.jsonl")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def _terminate_sessions(url: str) -> int:
    """``pg_terminate_backend`` on every session of the ledger's app: how many it ended."""
    try:
        with psycopg.connect(superuser_url(url), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'video-ledger' AND pid <> pg_backend_pid()"
            ).fetchone()
    except psycopg.OperationalError:  # the server is restarting
        return 0
    return int(row[0]) if row else 0


def _claims(logs: Path) -> list[dict[str, object]]:
    found = []
    for path in sorted(logs.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            found.append(json.loads(line))
    return found


def test_writers_killed_terminated_and_restarted_say_the_truth_about_every_append(
    pg_server: PgServer, tmp_path: Path, long_run: bool
) -> None:
    url = pg_server.app_database()
    writers, rounds = (6, 240) if long_run else (3, 24)
    rng = random.Random(2026)
    tally = Tally("pg chaos")
    procs = {f"w{i}": _spawn(url, f"w{i}", tmp_path) for i in range(writers)}
    spawned = writers
    try:
        time.sleep(1.0)
        for n in range(rounds):
            action = "restart" if n % 12 == 11 else rng.choice(("kill", "terminate", "terminate"))
            if action == "kill":
                name = rng.choice(sorted(procs))
                procs[name].send_signal(signal.SIGKILL)
                procs[name].wait(30)
                procs[f"w{spawned}"] = _spawn(url, f"w{spawned}", tmp_path)
                del procs[name]
                spawned += 1
            elif action == "terminate":
                tally.add("sessions terminated", _terminate_sessions(url))
            else:
                pg_server.stop("immediate")  # a crash: no checkpoint, no goodbye to the clients
                time.sleep(rng.uniform(0.1, 0.6))
                pg_server.start()
            tally.add(action)
            time.sleep(rng.uniform(0.05, 0.4))
        time.sleep(1.0)  # the last restart's reconnects settle
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    store = PostgresStore(url)
    try:
        events = [e for batch in store.check() for e in batch.events]  # every crc, seq and prev checked
    finally:
        store.close()
    rows = Counter(e.era_id for e in events)
    claims = _claims(tmp_path)
    lies = []
    for claim in claims:
        count = rows[str(claim["marker"])]
        if claim["outcome"] == "ok":
            tally.add("acknowledged")
            if count != 1:
                lies.append((claim, count))
        elif claim["doubt"]:
            tally.add("in doubt")
            if count > 1:
                lies.append((claim, count))
        else:
            tally.add("nothing recorded")
            if count != 0:  # a LedgerIOError that is no DurabilityError: the store's word for "nothing"
                lies.append((claim, count))
    tally.report()
    assert not lies, lies[:5]
    assert max(rows.values()) == 1  # no append landed twice, whatever its writer was told
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert tally.counts["acknowledged"] > rounds and tally.counts.get("sessions terminated", 0) > 0
    for err in tmp_path.glob("*.err"):  # psycopg's warnings and tracebacks never reach the terminal raw
        text = err.read_text()
        assert "error ignored" not in text and "Traceback" not in text, text[-2000:]
