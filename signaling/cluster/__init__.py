"""The control plane across nodes: ownership, routing, replicas; in-memory parts for one node."""
