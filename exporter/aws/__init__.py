"""AWS access: every AWS call goes through here (clients, credentials, retries, request counts, errors)."""
