"""The use cases: scheduling a payment, the calendar sync and its channels, an admin's change
to a booking, group sessions, reconcile, consent. Each reads through the adapters, asks the
domain, and writes; none parses HTTP.
"""
