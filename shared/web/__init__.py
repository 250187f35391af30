"""The HTTP edge every `main.py` uses: the endpoint wrapper, request parsing and its limits,
admin and task authentication, and the admin console's assets.
"""
