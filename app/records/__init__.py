"""Record schemas: one module per schema, the shared field vocabulary, and the registry.

The generic parts (ingest, sealing, receipts, audit) never name a schema:
they ask :mod:`app.records.registry` for the entry of a record's ``schema``
member. A new schema is a module here that builds a
:class:`~app.records.registry.RecordSchema` and is listed in
:func:`~app.records.registry.builtin_schemas`.
"""
