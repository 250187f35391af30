"""The platform's rules: booking states, values and pure decisions, with no I/O.

Nothing here imports another folder of `shared/` or any client library: services read,
ask a decision here (with `now` as an argument), and write the answer.
"""
