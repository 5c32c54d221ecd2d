"""The exporter's text renderer writes byte for byte what prometheus_client writes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.textformat import Family, counter, gauge, render


class _Fixed:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return self.families


def reference(families: list) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def twins(kind: str, name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float]]):
    ours = (gauge if kind == "gauge" else counter)(name, doc, labels=labels)
    theirs = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, doc, labels=labels)
    for values, value in rows:
        ours.add_metric(values, value)
        theirs.add_metric(values, value)
    return ours, theirs


def test_same_bytes_as_prometheus_client_for_the_awkward_cases() -> None:
    cases = [
        ("gauge", "aws_root_x", 'Help with "quotes", a \\ backslash\nand a newline.', ["zeta", "account_id", "mid"],
         [(["z", "123456789012", 'a "quoted"\\ value\nover lines'], 1.0), (["", "1", "ü ✓"], 0.0)]),
        ("gauge", "aws_root_values", "values", ["v"],
         [(["nan"], math.nan), (["inf"], math.inf), (["-inf"], -math.inf), (["big"], 1.79552172e9), (["tiny"], 1e-7),
          (["negative zero"], -0.0),
          (["negative"], -3.5), (["int"], 7), (["true"], True), (["false"], False), (["huge"], 1e22)]),
        ("counter", "aws_root_events_total", "a counter named with _total", ["source"], [(["sqs"], 3.0)]),
        ("counter", "aws_root_exporter_sweeps", "a counter named without it", ["sweep"], [(["posture"], 0)]),
        ("gauge", "aws_root_empty", "no samples at all", ["account_id"], []),
    ]
    ours, theirs = [], []
    for case in cases:
        a, b = twins(*case)
        ours.append(a)
        theirs.append(b)
    ours.append(gauge("aws_root_no_labels", "a single value", value=42.0))
    theirs.append(GaugeMetricFamily("aws_root_no_labels", "a single value", value=42.0))
    histogram = HistogramMetricFamily("aws_root_delay_seconds", "a histogram, rendered from prometheus_client's family", labels=["source"])
    histogram.add_metric(["sqs"], [("30.0", 1.0), ("+Inf", 2.0)], 95.0)
    ours.append(histogram)
    theirs.append(histogram)
    assert render(ours) == reference(theirs)


label_value = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
number = st.one_of(st.floats(allow_nan=False), st.integers(min_value=-(2**53), max_value=2**53), st.booleans())


@settings(max_examples=400)
@given(
    # Label names as the exporter's: a letter first (names starting with "__" are reserved).
    labels=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=0, max_size=4, unique=True),
    data=st.data(),
    kind=st.sampled_from(["gauge", "counter"]),
)
def test_same_bytes_for_any_label_values_and_numbers(labels: list[str], data, kind: str) -> None:
    rows = data.draw(st.lists(st.tuples(st.lists(label_value, min_size=len(labels), max_size=len(labels)), number), max_size=5))
    ours, theirs = twins(kind, "aws_root_generated", "generated", labels, rows)
    text = render([ours])
    assert text == reference([theirs])
    parsed = list(text_string_to_metric_families(text.decode()))
    assert sum(len(f.samples) for f in parsed) == len(rows)


def test_samples_view_matches_the_rows() -> None:
    family = counter("aws_root_things_total", "things", labels=["account_id", "outcome"])
    family.add_metric(["123456789012", "success"], 2.0)
    [sample] = family.samples
    assert (sample.name, sample.labels, sample.value) == ("aws_root_things_total", {"account_id": "123456789012", "outcome": "success"}, 2.0)


def test_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="unsupported metric type 'summary'"):
        Family("aws_root_x", "x", kind="summary")
    info = CounterMetricFamily("aws_root_created", "with a created sample", labels=["a"], created=1.0)
    info.add_metric(["x"], 1.0, created=5.0)
    with pytest.raises(ValueError, match="_created samples"):
        render([info])
