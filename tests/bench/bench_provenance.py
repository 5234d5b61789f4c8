"""Benchmark: what provenance and usage records cost the log, and what a C2PA signature costs a video.

Under the protocol of ``protocol.py`` (interleaved rounds, load average read before each, ratios per round):

- ``append``: durable appends through the attempt API (``begin_attempt`` then ``mark_video_ready``, writers
  only appending) with no records, and with a full provenance record at the start and usage plus a
  completing provenance at the end: the ratio with/without (target ≥ 0.9: within 10 %).
- ``rebuild``: a full replay (``Ledger.rebuild`` in a fresh process, as ``bench_ledger.py`` measures it)
  of a log of generating/ready attempts, bare and with the same records on every attempt (target ≥ 0.9),
  and the bytes per event of each log.
- ``c2pa``: embedding a manifest in a 10 MB MP4 (``C2paSigner.embed``: signed, validated, replaced) against
  SHA-256 of the same file (``file_digest``, what ``job.ready`` already pays).

    python tests/bench/bench_provenance.py            # the sizes quoted in docs/performance.md
    python tests/bench/bench_provenance.py --tiny     # seconds: proves the script works
    python tests/bench/bench_provenance.py --only rebuild,c2pa
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ledger import Ledger
from ledger.events import (
    GENESIS_HASH,
    Generating,
    InputRef,
    ModelRef,
    Provenance,
    Ready,
    Usage,
    Worker,
    encode_line,
    line_hash,
)
from ledger.mp4 import write_mp4
from ledger.pipeline import file_digest
from ledger.provenance import canonical_json, text_sha256

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ledger import Clock, replay  # siblings, not a package
from protocol import Protocol, Ratio

perf = time.perf_counter
PROVENANCE = Provenance(
    model=ModelRef(name="wan2.1-t2v-14B", version="2025-02-25", weights_digest="sha256:" + "3f" * 32),
    seed=2_718_281_828,
    parameters=canonical_json(
        {"steps": 30, "guidance": 6.5, "size": [832, 480], "frames": 81, "fps": 16, "scheduler": "unipc"}
    ),
    prompt_template="cinematic, historically faithful, {prompt}, golden hour",
    prompt_sha256=text_sha256("cinematic, historically faithful, the spot, golden hour"),
    inputs=(InputRef(role="reference-image", sha256="9a" * 32),),
)
WORKER = Worker(name="gpu-worker-3", host="render-07.example", pid=48213)
USAGE = Usage(
    wall_seconds=183.204, gpu_seconds=181.9, gpu_type="NVIDIA H100 80GB HBM3", cost=0.21, currency="USD"
)
END = Provenance(seed=2_718_281_829)
SMALL = (  # what a pipeline that records less gives: model, seed, parameters; a worker name; GPU and wall time
    Provenance(
        model=ModelRef(name="wan2.1-t2v-14B", version="2025-02-25"),
        seed=2_718_281_828,
        parameters='{"steps":30}',
    ),
    Worker(name="gpu-worker-3"),
    Usage(wall_seconds=183.204, gpu_seconds=181.9),
)


def write_log(path: Path, events: int, entries: int, *, records: bool | str) -> None:
    """``bench_ledger.write_log``'s log (generating, then ready, each entry in turn) in format 2, with
    every attempt's full records (``True``), the small ones (``"small"``) or none."""
    prev = GENESIS_HASH
    with open(path, "wb") as f:
        for seq in range(1, events + 1):
            i = (seq - 1) % entries
            ts = f"2026-11-23T{9 + seq // 3_600_000_000:02d}:00:00.000000Z"
            spot, era = f"spot-{i:05d}", f"era-{i % 10:02d}"
            ev: Generating | Ready
            if ((seq - 1) // entries) % 2 == 0:
                extra = {"provenance": PROVENANCE, "worker": WORKER} if records else {}
                if records == "small":
                    extra = {"provenance": SMALL[0], "worker": SMALL[1]}
                ev = Generating(2, seq, ts, spot, era, prev, prompt="A cinematic view, golden hour", **extra)
            else:
                more = {"provenance": END, "usage": USAGE} if records else {}
                if records == "small":
                    more = {"usage": SMALL[2]}
                ev = Ready(2, seq, ts, spot, era, prev, local_path=f"videos/{spot}.mp4", attempt=seq - entries,
                           size=4_194_304, sha256="5e" * 32, **more)  # fmt: skip
            line = encode_line(ev)
            f.write(line)
            prev = line_hash(line[:-1])


def appends(tmp: Path, n: int, *, records: bool) -> float:
    """Events per second: ``n // 2`` attempts, each a begin_attempt and a mark_video_ready."""
    ledger = Ledger(tmp / "l", clock=Clock(), projection="deferred")  # type: ignore[arg-type]
    start = perf()
    for i in range(n // 2):
        spot = f"spot-{i % 100:05d}"
        if records:
            started = ledger.begin_attempt(
                spot, "era", "A cinematic view", provenance=PROVENANCE, worker=WORKER
            )
            ledger.mark_video_ready(
                spot, "era", "v.mp4", attempt=started.attempt, provenance=END, usage=USAGE
            )
        else:
            started = ledger.begin_attempt(spot, "era", "A cinematic view")
            ledger.mark_video_ready(spot, "era", "v.mp4", attempt=started.attempt)
    elapsed = perf() - start
    ledger.close()
    return (n // 2 * 2) / elapsed


def rebuild(tmp: Path, log: Path, key: str) -> dict[str, float]:
    """Events/s of ``bench_ledger.replay``'s rebuild (a kept ledger: snapshot and tree there), by the wall
    clock and by CPU time (``key (CPU)``)."""
    wall, _, cpu = replay(tmp, log, "ledger")
    return {key: wall, f"{key} (CPU)": cpu}


def c2pa_sign(tmp: Path, video: Path) -> float | None:
    """ms to embed a manifest in a copy of ``video``."""
    try:
        from ledger.disclosure import make_development_ca
    except ImportError:
        return None
    signer, _ = make_development_ca(tmp / "ca")
    copy = tmp / "v.mp4"
    shutil.copy(video, copy)
    start = perf()
    signer.embed(copy, spot_id="spot", era_id="era", attempt=1, provenance=PROVENANCE)
    return (perf() - start) * 1000


def sha256_file(video: Path) -> float:
    """ms to read and hash ``video`` (warm page cache, as signing it reads it too)."""
    file_digest(video)
    start = perf()
    file_digest(video)
    return (perf() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--only", default="append,rebuild,c2pa", help="comma-separated groups")
    args = parser.parse_args(argv)
    rounds = 1 if args.tiny else args.rounds
    n = 40 if args.tiny else 1000
    events, entries = (2000, 100) if args.tiny else (400_000, 10_000)
    scratch = Path(tempfile.mkdtemp(prefix="bench-provenance-", dir=args.tmp_dir))
    logs = {kind: scratch / f"{kind}.jsonl" for kind in ("bare", "small", "records")}
    for kind, log in logs.items():
        write_log(log, events, entries, records={"bare": False, "small": "small", "records": True}[kind])
    video = scratch / "ten.mp4"
    write_mp4(video, os.urandom((1 if args.tiny else 10) << 20))
    cases: list[tuple[str, Callable[[Path], float | dict[str, float] | None]]] = [
        ("append.bare", lambda t: appends(t, n, records=False)),
        ("append.records", lambda t: appends(t, n, records=True)),
        ("rebuild.bare", lambda t: rebuild(t, logs["bare"], "rebuild.bare")),
        ("rebuild.records", lambda t: rebuild(t, logs["records"], "rebuild.records")),
        ("rebuild.small", lambda t: rebuild(t, logs["small"], "rebuild.small")),
        ("c2pa.sign_ms", lambda t: c2pa_sign(t, video)),
        ("c2pa.sha256_ms", lambda t: sha256_file(video)),
    ]
    groups = set(args.only.split(","))
    cases = [(key, case) for key, case in cases if key.split(".")[0] in groups]
    protocol = Protocol(rounds, float("inf") if args.tiny else args.max_load)

    def measure(
        key: str, case: Callable[[Path], float | dict[str, float] | None]
    ) -> Callable[[int], float | dict[str, float] | None]:
        def run(r: int) -> float | dict[str, float] | None:
            tmp = scratch / f"{key}-{r}"
            tmp.mkdir()
            os.sync()
            value = case(tmp)
            shutil.rmtree(tmp)
            return value

        return run

    protocol.run(
        ((k, measure(k, c)) for k, c in cases), lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(protocol.header())
    for kind, log in logs.items():
        print(f"bytes per event, {kind}: {log.stat().st_size / events:,.1f} ({events:,} events)")
    print(f"video signed: {video.stat().st_size:,} bytes")
    print("\n| measurement | median | q1..q3 | min..max |\n|---|---|---|---|")
    for key in [name for k, _ in cases for name in (k, f"{k} (CPU)")]:
        s = protocol.summary(key)
        if s is not None:
            print(f"| `{key}` | {s.median:,.1f} | {s.q1:,.1f}..{s.q3:,.1f} | {s.low:,.1f}..{s.high:,.1f} |")
    ratios = [
        ("appends with records / without", "append.records", "append.bare", "≥ 0.9"),
        ("rebuild with records / without", "rebuild.records", "rebuild.bare", "≥ 0.9"),
        ("rebuild with small records / without", "rebuild.small", "rebuild.bare", "≥ 0.9"),
        ("rebuild with records / without, CPU time", "rebuild.records (CPU)", "rebuild.bare (CPU)", "≥ 0.9"),
        (
            "rebuild with small records / without, CPU time",
            "rebuild.small (CPU)",
            "rebuild.bare (CPU)",
            "≥ 0.9",
        ),
        ("C2PA embed / SHA-256 of the file", "c2pa.sign_ms", "c2pa.sha256_ms", ""),
    ]
    print()
    print("\n".join(protocol.ratio_table(Ratio(*r) for r in ratios)))
    shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
