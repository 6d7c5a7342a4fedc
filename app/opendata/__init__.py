"""Open data in and out of the ledger (DESIGN §4, §5), every job side by side.

* :mod:`app.opendata.mapping` -- one order record as one OCDS 1.1 release:
  the ``ancla`` extension object (and the extension's files and URLs), the
  OCDS constants (OCDS_VERSION, RUC_SCHEME, CONTRACT_STATUS, ...).
* :mod:`app.opendata.packages` -- release and record packages (with their
  ``compiledRelease``), in memory or streamed.
* :mod:`app.opendata.export` -- the ledger's purchase orders read (SQL) as
  OCDS releases and as CSV rows.
* :mod:`app.opendata.importing` -- ``ancla import``: the readers of JSON lines
  and Perú Compras' CSV report, format detection and the chunked recording.
* :mod:`app.opendata.ocds_in` -- OCDS packages in: each contract as a
  purchase order, or the reason why not, with its JSON pointer.
"""
