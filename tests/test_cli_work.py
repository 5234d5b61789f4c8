"""The work loop's commands: claim (and its exit status when there is nothing to claim), heartbeat,
set --attempt, requeue, policy, reap by lease."""

from __future__ import annotations

import json

from ledger.cli import EXIT_NOTHING

from .conftest import Run


def test_a_shell_worker_claims_renews_and_ends_its_attempt(run_cli: Run) -> None:
    assert run_cli("set", "a", "e", "--status", "pending", "--prompt", "pa", "-q")[0] == 0
    code, out, _ = run_cli("claim", "--worker", "sh1", "--lease", "90s", "--json")
    assert code == 0
    job = json.loads(out)
    assert (job["spotId"], job["eraId"], job["attempt"], job["lease"]) == ("a", "e", 1, 90.0)
    code, out, _ = run_cli("heartbeat", "a", "e", "--attempt", "1")
    assert code == 0 and out.startswith("renewed attempt 1: recorded event")
    code, _, err = run_cli("heartbeat", "a", "e", "--attempt", "7")
    assert code == 2 and "cannot renew the lease of attempt 7" in err and "nothing was recorded" in err
    code, _, err = run_cli("set", "a", "e", "--status", "ready", "--local-path", "v.mp4", "--attempt", "4")
    assert code == 2 and "attempt 4: it is not the entry's current attempt" in err
    assert (
        run_cli("set", "a", "e", "--status", "ready", "--local-path", "v.mp4", "--attempt", "1", "-q")[0] == 0
    )
    code, out, _ = run_cli("claim")
    assert (code, out) == (EXIT_NOTHING, "nothing to claim\n")
    assert run_cli("claim", "--json") == (EXIT_NOTHING, "", "")
    code, out, _ = run_cli("timeline", "a", "e")
    assert "attempt 1 started by sh1@" in out


def test_policy_shows_and_sets_the_ledgers_retry_policy_and_requeue_brings_an_entry_back(
    run_cli: Run,
) -> None:
    assert run_cli("init")[0] == 0
    code, out, _ = run_cli("policy")
    assert out == "max_attempts=3 backoff=30s factor=2 max=3600s (the default: no policy event recorded)\n"
    code, out, _ = run_cli("policy", "--max-attempts", "1", "--backoff", "0", "--not-retried", "BadPrompt")
    assert out == "max_attempts=1 backoff=0s factor=2 max=3600s not_retried='BadPrompt' (event 1)\n"
    assert json.loads(run_cli("policy", "--json")[1])["maxAttempts"] == 1
    assert run_cli("policy", "--max-attempts", "0")[0] == 2
    run_cli("set", "a", "e", "--status", "pending", "--prompt", "pa", "-q")
    assert run_cli("claim", "--json")[0] == 0
    run_cli("fail", "a", "e", "GPU lost", "-q")
    assert run_cli("claim")[0] == EXIT_NOTHING, "its one attempt is used"
    code, out, _ = run_cli("requeue", "a", "e")
    assert code == 0 and "pending" in out and "recorded event" in out
    assert run_cli("requeue", "a", "e")[1].endswith("nothing recorded: a/e already is pending\n")
    code, out, _ = run_cli("claim")
    assert code == 0 and out.startswith("claimed a e attempt 2 (lease 60s)")
    code, _, err = run_cli("requeue", "a", "e")
    assert code == 2 and "attempt 2 is running" in err


def test_reap_without_older_than_reaps_only_expired_leases(run_cli: Run) -> None:
    run_cli("set", "a", "e", "--status", "pending", "--prompt", "pa", "-q")
    run_cli("claim", "--lease", "1h")
    code, out, _ = run_cli("reap")
    assert (code, out) == (0, "reaped 0 entries stuck in generating\n")
    code, out, _ = run_cli("reap", "--older-than", "1s")
    assert out.endswith("reaped 0 entries stuck in generating\n"), "its lease is current"
