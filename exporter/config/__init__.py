"""Configuration: the settings (environment, YAML, command line) and the Prometheus web configuration file."""
