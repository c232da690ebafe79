"""The pure control plane: commands, events, the session core, breakouts, policy and views.

Nothing here does I/O, reads a clock or draws randomness it was not given: time and seeds
come in as arguments, so every rule is tested without sockets or sleeps (the import
contracts in pyproject.toml keep it that way).
"""
