"""Open data in and out of the ledger (DESIGN §4, §5), every job side by side.

* :mod:`app.opendata.ocds` -- OCDS 1.1 releases and CSV out of the ledger,
  and the contracts of OCDS packages in as purchase orders.
* :mod:`app.opendata.packages` -- release and record packages (with their
  ``compiledRelease``), in memory or streamed.
* :mod:`app.opendata.importing` -- ``ancla import``: the readers of JSON lines
  and Perú Compras' CSV report, format detection and the chunked recording.
"""
