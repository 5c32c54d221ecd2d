"""Posture: the root user's credentials per account (account summary, credential report, AssumeRoot audit)."""
