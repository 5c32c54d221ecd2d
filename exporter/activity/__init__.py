"""Root-activity detection: CloudTrail record classification, readers and the event store.

Nothing in this package calls AWS: collectors hand it records, it hands back verdicts and
metric families.
"""
