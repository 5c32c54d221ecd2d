"""The web server: /metrics and the other endpoints, TLS and basic auth, the container health check."""
