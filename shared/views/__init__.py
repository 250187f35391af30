"""Read models for admins and the public feed: the listing of classes, the attention queue,
the integration's health, and their rendering.
"""
