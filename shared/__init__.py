"""The one package every function imports: bookings, payments, calendar, tokens, config.

Functions stay thin adapters over these modules; everything here is testable without HTTP.
"""
