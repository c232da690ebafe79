"""Several nodes as one clinic: Redis-backed leases, node directory and bus (adapters)."""
