"""The seed's numbers beside Falcon's (pure): the table the seed-incident drill prints."""

from __future__ import annotations

from falcon_platform.drills.seed import ActNumbers, markdown_table, side_by_side


def test_side_by_side_puts_each_act_beside_the_seed() -> None:
    act = ActNumbers(impact_s=None, failed=0, total=6000, detect_s=16.5, mitigate_s=5.0,
                     oom_kills=0, manual_steps="none", postmortem="INC-1.md")  # fmt: skip
    rows = side_by_side({"forced": act})
    assert rows[0] == ["", "seed incident", "Falcon: forced"]
    table = {r[0]: r[1:] for r in rows[1:]}
    assert table["duration of user impact"] == ["47 min", "0 s"]
    assert table["share of requests failed"] == ["100%", "0.00% (0 of 6000)"]
    assert table["time to detect"][1] == "16.5 s"
    assert table["OOM kills"][1] == "0"
    assert table["postmortem"][1] == "INC-1.md"


def test_impact_and_long_durations_are_shown_in_minutes() -> None:
    act = ActNumbers(impact_s=300.0, failed=30, total=1000, detect_s=None, mitigate_s=150.0,
                     oom_kills=2, manual_steps="rollback")  # fmt: skip
    table = {r[0]: r[1:] for r in side_by_side({"a": act})[1:]}
    assert table["duration of user impact"][1] == "5.0 min"
    assert table["share of requests failed"][1] == "3.00% (30 of 1000)"
    assert table["time to detect"][1] == "—"
    assert table["time to mitigate"][1] == "2.5 min"
    text = markdown_table(side_by_side({"a": act}))
    assert text.splitlines()[1] == "|---|---|---|"
    assert "| requests affected | ~50,000 | 30 |" in text
