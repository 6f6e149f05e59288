"""What guidebot keeps about people, for how long, and a customer's rights over it.

* `retention`: the periodic prune of each table past its GUIDEBOT_RETENTION_* period, in
  small batches, without moving the figures (the rollups of pruned days are frozen first).
* `customers`: every table that holds a customer (the coverage test introspects the models),
  and per table how to export its rows and how to erase the person from them.
* `rights`: `export_customer` and `erase_customer`, used by the CLI and the HQ API.

This package sits above the domains it reads (contacts, content, sop, metrics, bot, intake)
and below the faces (web, cli).
"""
