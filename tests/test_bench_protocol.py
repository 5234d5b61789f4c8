"""tests/bench/protocol.py: the rules that make a published figure hold (quartiles, verdicts, drops)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "bench"))
from protocol import Protocol, Ratio, quartiles, verdict  # a script's sibling, not a package


def test_a_target_is_met_only_when_the_lower_quartile_clears_it() -> None:
    assert verdict("≥ 0.78", 0.79, 0.90) == "met"
    assert verdict("≥ 0.78", 0.70, 0.90) == "unclear"  # the median may clear it; the spread spans it
    assert verdict("≥ 0.78", 0.60, 0.77) == "missed"
    assert verdict("≤ 1.1", 0.95, 1.05) == "met"
    assert verdict("≤ 1.1", 1.0, 1.2) == "unclear"
    assert verdict("≤ 1.1", 1.15, 1.3) == "missed"
    assert verdict("", 0.0, 1.0) == ""
    with pytest.raises(ValueError, match="a target is"):
        verdict("about 1", 0.0, 1.0)


def test_quartiles() -> None:
    assert quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def _cases(a: list[float], b: list[float]) -> list[tuple[str, Callable[[int], float | None]]]:
    return [("a", lambda r: a[r]), ("b", lambda r: b[r])]


def test_rounds_above_the_load_threshold_are_dropped_and_counted() -> None:
    loads = iter([0.5, 2.5, 0.7, 3.0])
    protocol = Protocol(rounds=4, max_load=1.5, load=lambda: next(loads))
    lines: list[str] = []
    protocol.run(_cases([1, 100, 3, 100], [1, 1, 1, 1]), lines.append)
    assert protocol.figures("a") == [1, 3]
    assert protocol.dropped == [2.5, 3.0]
    assert "2 rounds kept of 4" in protocol.header() and "2 dropped above 1.5" in protocol.header()
    assert sum("dropped" in line for line in lines) == 2


def test_a_ratio_is_taken_per_round_not_from_medians_of_different_rounds() -> None:
    # a drifts up while b drifts with it: each round's ratio is 2, although median(a) / median(b) is not.
    a, b = [2.0, 4.0, 20.0], [1.0, 2.0, 10.0]
    protocol = Protocol(rounds=3, max_load=10.0, load=lambda: 0.0)
    protocol.run(_cases(a, b), lambda line: None)
    ratio = protocol.ratio(Ratio("a / b", "a", "b", "≥ 2"))
    assert ratio is not None and (ratio.q1, ratio.median, ratio.q3) == (2.0, 2.0, 2.0)
    assert protocol.ratio_table([Ratio("a / b", "a", "b", "≥ 2")])[-1].endswith("| ≥ 2 | met |")


def test_a_case_may_report_several_named_figures_and_none() -> None:
    protocol = Protocol(rounds=2, max_load=10.0, load=lambda: 0.0)
    protocol.run([("x", lambda r: {"x": 1.0, "x (p99)": 5.0}), ("y", lambda r: None)], lambda line: None)
    assert protocol.figures("x (p99)") == [5.0, 5.0]
    assert protocol.summary("y") is None
