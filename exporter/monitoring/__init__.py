"""Proof of sight: whether each account, region and activity source would show a root
login now (canaries, the trail and forwarder checks, accounts that left), judged purely."""
