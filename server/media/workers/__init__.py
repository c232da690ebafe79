"""Media workers: the relay in child processes, one per core, each owning whole sessions."""
