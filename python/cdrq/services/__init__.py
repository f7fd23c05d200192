"""The PBX's endpoints both ways: ``server`` (``cdrq serve``: /cdrapi,
/recapi, the JSON API), ``pull`` (``cdrq pull``: a PBX's CDRs into a
dataset) and ``listen`` (``cdrq listen``: calls pushed as they end)."""
