"""Discovery: which accounts to collect (Organizations, a list, or this account) and which to skip."""
