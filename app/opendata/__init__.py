"""Open data in and out of the ledger (DESIGN §4, §5), every job side by side.

* :mod:`app.opendata.ocds` -- one order as one OCDS 1.1 release (and the
  ``ancla`` extension), and the contracts of OCDS packages in as purchase orders.
* :mod:`app.opendata.packages` -- release and record packages (with their
  ``compiledRelease``), in memory or streamed.
* :mod:`app.opendata.export` -- the ledger's purchase orders read (SQL) as
  OCDS releases and as CSV rows.
* :mod:`app.opendata.importing` -- ``ancla import``: the readers of JSON lines
  and Perú Compras' CSV report, format detection and the chunked recording.
"""
