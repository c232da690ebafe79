"""Rollback evidence: signed checkpoints of every stream's head, kept outside the database.

`writer` keeps them up to date from the running server, `document` is the signed file,
`compare` is what `circle verify` does with them (docs/security.md, "Rollback evidence").
"""
