"""Metrics: the only place that knows metric names; renders the exporter's state as Prometheus text."""
