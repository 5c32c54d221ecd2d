"""Where the exporter must prove its sight: the monitored regions of a partition."""

from __future__ import annotations

from exporter.aws.partitions import global_region
from exporter.config.settings import Settings


def monitored_regions(settings: Settings, partition: str) -> list[str]:
    """`monitored_regions`, else `lookup_events_regions`, else the partition's global region."""
    return settings.monitored_regions or settings.lookup_events_regions or [global_region(partition)]
