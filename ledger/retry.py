"""The retry policy: how often a failed entry is tried again, and when. Pure rules, no I/O.

The policy is the ledger's, not a worker's: it is recorded in the log as a ``policy`` event
(:class:`~ledger.events.Policy`), so every worker of the ledger, on any host and any store, follows the same
one, and a change of it is in the audited history. Until a ``policy`` event is recorded,
:data:`DEFAULT_POLICY` applies.

- An entry's *tries* are the attempts it has had since it was last queued (a ``pending`` event: queued,
  requeued, edited while queued), or since its last ``ready`` or import.
- A ``failed`` entry is retried while its tries are fewer than :attr:`RetryPolicy.max_attempts` and its
  error does not start with one of :attr:`RetryPolicy.not_retried`; it is then eligible
  :meth:`RetryPolicy.delay` seconds after it failed: ``backoff * backoff_factor ** (tries - 1)``, at most
  ``backoff_max``.
- An entry that used up its attempts stays ``failed`` (the app's four statuses are all there is) and is not
  claimed again until it is requeued.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from ledger.errors import InvalidEntryError
from ledger.events import Policy

__all__ = ("DEFAULT_POLICY", "RetryPolicy", "parse_duration", "policy_text")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A ledger's retry policy (the fields of a ``policy`` event)."""

    max_attempts: int = 3
    """Attempts an entry gets from being queued: 1 means never retried."""
    backoff: float = 30.0
    """Seconds between an entry's first failure and its second attempt."""
    backoff_factor: float = 2.0
    """Each further wait is this many times the one before."""
    backoff_max: float | None = 3600.0
    """No wait is longer than this many seconds (``None``: no limit)."""
    not_retried: tuple[str, ...] = ()
    """An error starting with one of these (an exception's type name, say) is never retried."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 1000:
            raise InvalidEntryError(f"max attempts must be 1..1000, not {self.max_attempts}")
        if not self.backoff >= 0 or self.backoff == float("inf"):
            raise InvalidEntryError(f"backoff must be 0 or more seconds, not {self.backoff}")
        if not 1 <= self.backoff_factor <= 1000:
            raise InvalidEntryError(f"backoff factor must be 1..1000, not {self.backoff_factor}")
        if self.backoff_max is not None and not 0 <= self.backoff_max < float("inf"):
            raise InvalidEntryError(f"the longest backoff must be 0 or more seconds, not {self.backoff_max}")
        if any(not p or len(p) > 256 for p in self.not_retried):
            raise InvalidEntryError("an error that is not retried is 1..256 characters")

    @classmethod
    def of(cls, event: Policy) -> RetryPolicy:
        """The policy a ``policy`` event records."""
        return cls(
            max_attempts=event.max_attempts,
            backoff=event.backoff,
            backoff_factor=event.backoff_factor,
            backoff_max=event.backoff_max,
            not_retried=tuple(event.not_retried),
        )

    def fields(self) -> dict[str, object]:
        """The payload of the ``policy`` event that records this policy."""
        return {
            "max_attempts": self.max_attempts,
            "backoff": float(self.backoff),
            "backoff_factor": float(self.backoff_factor),
            "backoff_max": None if self.backoff_max is None else float(self.backoff_max),
            "not_retried": self.not_retried,
        }

    def delay(self, tries: int) -> float:
        """Seconds from an entry's failure to its next attempt, after ``tries`` attempts (≥ 1)."""
        exponent = max(tries - 1, 0)
        limit = self.backoff_max
        try:
            wait = float(self.backoff) * float(self.backoff_factor) ** exponent
        except OverflowError:
            wait = float("inf")
        return wait if limit is None else min(wait, limit)

    def retried(self, error: str | None) -> bool:
        """Whether a failure with ``error`` may be tried again at all."""
        return error is None or not error.startswith(self.not_retried)

    def retry_at(self, failed_at: str, tries: int, error: str | None) -> str | None:
        """When (an event time, comparable as a string) a ``failed`` entry that failed at ``failed_at``
        after ``tries`` attempts may be claimed again; ``None`` if never (attempts used up, or an error that
        is not retried)."""
        if tries >= self.max_attempts or not self.retried(error):
            return None
        return shift(failed_at, self.delay(tries))


DEFAULT_POLICY: Final = RetryPolicy()
"""The policy of a ledger that recorded none: 3 attempts, 30 s, 60 s between them, every error retried."""


def shift(ts: str, seconds: float) -> str:
    """The event time ``seconds`` after ``ts`` (the log's ``ts`` form), clamped to the last representable
    time for a very long wait."""
    moment = dt.datetime.fromisoformat(ts)
    try:
        later = moment + dt.timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # inf, or past year 9999
        later = dt.datetime.max.replace(tzinfo=dt.UTC)
    return later.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?\s*")
_UNIT: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit, ``ms``, ``s`` (default), ``m``, ``h`` or ``d``
    (``90``, ``1.5m``, ``250ms``). Raises :class:`~ledger.errors.InvalidEntryError`."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InvalidEntryError(f"{text!r} is not a duration like 30s, 250ms, 5m or 1h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds > 10 * 365 * 86400:
        raise InvalidEntryError(f"{text!r} is longer than ten years")
    return seconds


def policy_text(policy: RetryPolicy | Policy) -> str:
    """The policy in one line: ``max_attempts=3 backoff=30s factor=2 max=3600s not_retried=[...]``."""
    if isinstance(policy, Policy):
        policy = RetryPolicy.of(policy)
    longest = "none" if policy.backoff_max is None else f"{policy.backoff_max:g}s"
    text = (
        f"max_attempts={policy.max_attempts} backoff={policy.backoff:g}s factor={policy.backoff_factor:g} "
        f"max={longest}"
    )
    if policy.not_retried:
        text += " not_retried=" + ",".join(map(repr, policy.not_retried))
    return text
