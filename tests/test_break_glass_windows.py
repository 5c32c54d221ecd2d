"""The configured break-glass windows as metrics (exporter/metrics/break_glass.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from exporter.metrics.break_glass import window_families, window_section
from exporter.config.settings import BreakGlassWindow
from exporter.engine.state import ExporterState
from exporter.metrics.exposition import Exposition

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)


def window(account: str, start_h: float, end_h: float, ticket: str = "") -> BreakGlassWindow:
    return BreakGlassWindow(account_id=account, start=T0 + timedelta(hours=start_h), end=T0 + timedelta(hours=end_h), ticket=ticket)


def values(windows, now: datetime) -> dict[str, dict[tuple[str, str], float]]:
    out: dict[str, dict[tuple[str, str], float]] = {}
    for family in window_families(windows, now.timestamp()):
        out[family.name] = {tuple(labels): value for labels, value in family.rows}
    return out


def test_one_series_per_window_active_only_inside_it() -> None:
    windows = [window("111111111111", 0, 2, "CHG-1"), window("111111111111", 3, 4, "CHG-2"), window("222222222222", 0, 1, "CHG-3")]
    at = values(windows, T0 + timedelta(hours=1))
    assert at["aws_root_break_glass_window_active"] == {
        ("111111111111", "CHG-1"): 1, ("111111111111", "CHG-2"): 0, ("222222222222", "CHG-3"): 1,
    }
    assert at["aws_root_break_glass_window_start_timestamp_seconds"][("111111111111", "CHG-2")] == (T0 + timedelta(hours=3)).timestamp()
    assert at["aws_root_break_glass_window_end_timestamp_seconds"][("111111111111", "CHG-2")] == (T0 + timedelta(hours=4)).timestamp()
    # Inclusive at both ends, as the classifier's approval.
    assert values(windows, T0)["aws_root_break_glass_window_active"][("111111111111", "CHG-1")] == 1
    assert values(windows, T0 + timedelta(hours=2))["aws_root_break_glass_window_active"][("111111111111", "CHG-1")] == 1
    after = values(windows, T0 + timedelta(hours=2, seconds=1))["aws_root_break_glass_window_active"]
    assert after[("111111111111", "CHG-1")] == 0


def test_same_account_and_ticket_is_one_series_spanning_its_windows() -> None:
    windows = [window("111111111111", 0, 1), window("111111111111", 5, 6), window("111111111111", 2, 3, "CHG-1")]
    gap = values(windows, T0 + timedelta(hours=4))
    assert gap["aws_root_break_glass_window_active"] == {("111111111111", ""): 0, ("111111111111", "CHG-1"): 0}
    assert gap["aws_root_break_glass_window_start_timestamp_seconds"][("111111111111", "")] == T0.timestamp()
    assert gap["aws_root_break_glass_window_end_timestamp_seconds"][("111111111111", "")] == (T0 + timedelta(hours=6)).timestamp()
    assert values(windows, T0 + timedelta(hours=5, minutes=30))["aws_root_break_glass_window_active"][("111111111111", "")] == 1


def test_empty_ticket_is_a_series_without_the_ticket_label() -> None:
    state = ExporterState(600)
    now = [T0.timestamp()]
    state.sections.append(window_section([window("111111111111", 0, 1)], clock=lambda: now[0]))
    text = Exposition(state).render().decode()
    assert 'aws_root_break_glass_window_active{account_id="111111111111",ticket=""} 1.0' in text


def test_no_windows_exposes_empty_families() -> None:
    state = ExporterState(600)
    state.sections.append(window_section([]))
    text = Exposition(state).render().decode()
    assert "# TYPE aws_root_break_glass_window_active gauge" in text
    assert "aws_root_break_glass_window_active{" not in text


def test_section_is_rendered_again_when_a_boundary_is_crossed() -> None:
    now = [T0.timestamp() - 60]
    windows = [window("111111111111", 0, 1, "CHG-1")]
    section = window_section(windows, clock=lambda: now[0])
    state = ExporterState(600)
    state.sections.append(section)
    exposition = Exposition(state)
    line = 'aws_root_break_glass_window_active{account_id="111111111111",ticket="CHG-1"}'
    before = section.key()
    assert f"{line} 0.0" in exposition.render().decode()
    now[0] += 30
    assert section.key() == before  # no boundary crossed: the cached text is served
    now[0] = T0.timestamp()
    assert f"{line} 1.0" in exposition.render().decode()
    now[0] = T0.timestamp() + 3600
    assert f"{line} 1.0" in exposition.render().decode()
    now[0] += 0.5
    assert f"{line} 0.0" in exposition.render().decode()
