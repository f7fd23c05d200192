"""The default of every ``tz`` parameter that may name a dataset."""

from __future__ import annotations


class DefaultZone(str):
    """``"UTC"``, except that a dataset directory keeps the zone it was
    written in. Equal to ``"UTC"`` everywhere a source is not a dataset;
    ``tz is DEFAULT_TZ`` tells the default from an explicit ``"UTC"``."""

    __slots__ = ()


DEFAULT_TZ = DefaultZone("UTC")
