"""aws-root-exporter: AWS root user posture and activity as Prometheus metrics."""

__version__ = "0.1.0"
