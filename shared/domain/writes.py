"""What a decision writes besides plain values: two markers, turned into Firestore's
sentinels by the Firestore adapter, so decisions stay free of any client library.

`SERVER_TIME` is the commit's time; `REMOVE` deletes the field.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "REMOVE",
    "SERVER_TIME",
]


class _Marker(enum.Enum):
    SERVER_TIME = "server time"
    REMOVE = "remove"


SERVER_TIME: Final = _Marker.SERVER_TIME
"""The time the write is committed (Firestore's server timestamp)."""


REMOVE: Final = _Marker.REMOVE
"""Delete the field."""
