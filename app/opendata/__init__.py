"""Open data in and out of the ledger (DESIGN §4, §5), every job side by side.

* :mod:`app.opendata.mapping` -- one order record as one OCDS 1.1 release:
  the ``ancla`` extension object (and the extension's files and URLs), the
  OCDS constants (OCDS_VERSION, RUC_SCHEME, CONTRACT_STATUS, ...).
* :mod:`app.opendata.packages` -- release and record packages (with their
  ``compiledRelease``), in memory or streamed.
* :mod:`app.opendata.export` -- the ledger's purchase orders read (SQL, one
  query) as OCDS releases and as CSV rows, and ``write_export``, the one
  choice of writer for ``ancla export`` and ``GET /v1/export/...``.
* :mod:`app.opendata.importing` -- ``ancla import``: every reader side by side
  (JSON lines, Perú Compras' CSV report, OCDS packages), all yielding the same
  ``SourceRow``; format detection; ``read_rows`` (the reader of a format) and
  ``import_rows`` (the chunked recording through ingest).
* :mod:`app.opendata.ocds_in` -- OCDS packages in: each contract as a
  purchase order, or the reason why not, with its JSON pointer.
"""
