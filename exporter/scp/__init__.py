"""SCP: whether a service control policy fences the root user of each account."""
