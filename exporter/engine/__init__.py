"""The engine: schedules the collectors, records their status, publishes snapshots, applies reloads."""
