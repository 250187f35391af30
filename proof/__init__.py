"""`./dev.sh proof`: what the system promises, measured on a local stack of its own.

One module per part: `chaos`, `fuzz`, `secrets_scan`, `load`, `benchmarks`; `harness` starts
the stack and keeps the answers, `tcpproxy` breaks Firestore's connections, `report` writes
docs/proof.md. Never deployed.
"""
