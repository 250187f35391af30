"""The one package every function imports: `domain/` (rules), `adapters/` (upstreams),
`services/` (use cases), `views/` (read models) and `web/` (the HTTP edge), over `clock`,
`config`, `errors` and `logs`. Imports go only downward; `tests/unit/test_layout.py` checks.
"""
