"""Record schemas: one module per schema, the shared field vocabulary, and the registry.

The generic parts (ingest, sealing, receipts, audit) never name a schema:
they ask :mod:`app.records.registry` for the entry of a record's ``schema``
member. A new schema is a module here that registers a
:class:`~app.records.registry.RecordSchema`, imported below so that it is
registered whenever the package is.
"""

from app.records import order_event, purchase_order  # noqa: F401  (they register themselves)
