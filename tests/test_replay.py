"""Calibration arithmetic: precision, recall, lift and the suggested threshold (pure, no I/O)."""

from __future__ import annotations

from scoring.replay import calibrate, suggest

# Ten subjects by their peak score; s1–s3 became customers.
PEAKS = {"s1": 70, "s2": 45, "s3": 45, "s4": 45, "s5": 20, "s6": 20, "s7": 10, "s8": 10, "s9": 10, "s10": 10}
CUSTOMERS = {"s1", "s2", "s3"}


def test_each_threshold_counts_pqls_conversions_precision_recall_lift_and_alerts_a_week() -> None:
    rows = {r.threshold: r for r in calibrate(PEAKS, CUSTOMERS, population=10, weeks=2, thresholds=[10, 45, 70])}
    at45 = rows[45]
    assert (at45.pqls, at45.converted) == (4, 3)
    assert at45.precision == 0.75 and at45.recall == 1.0
    assert round(at45.lift, 2) == 2.5  # 75% against a base rate of 30%
    assert at45.per_week == 2.0
    assert rows[10].lift == 1.0  # everyone a PQL: no better than chance
    assert (rows[70].precision, round(rows[70].recall, 2)) == (1.0, 0.33)


def test_the_suggestion_is_the_best_f1_and_never_no_better_than_chance() -> None:
    rows = calibrate(PEAKS, CUSTOMERS, population=10, weeks=2, thresholds=[10, 20, 45, 70])
    assert suggest(rows).threshold == 45  # type: ignore[union-attr]
    # When only "everyone" catches the customers, there is nothing to suggest.
    flat = calibrate({"a": 10, "b": 10}, {"a"}, population=2, weeks=1, thresholds=[10])
    assert suggest(flat) is None


def test_min_precision_takes_the_lowest_threshold_that_meets_it() -> None:
    rows = calibrate(PEAKS, CUSTOMERS, population=10, weeks=2, thresholds=[10, 20, 45, 70])
    assert suggest(rows, min_precision=0.7).threshold == 45  # type: ignore[union-attr]
    assert suggest(rows, min_precision=0.9).threshold == 70  # type: ignore[union-attr]
    assert suggest(calibrate(PEAKS, set(), population=10, weeks=2, thresholds=[10]), min_precision=0.1) is None
