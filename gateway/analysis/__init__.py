"""Analysis of stored readings: loaders (journal, CSV/Parquet, InfluxQL) that hand arrays to
:mod:`analytics`, the building's energy channels, the KPIs written as measurements, ``pedf analyze``
(batch, with tables, plots and a report) and the live KPIs computed per closed interval.

What other packages may use is named here; the ``_`` modules are private.  Importing this package
loads numba (through :mod:`analytics`): the service imports it only for a site with ``analytics:``.
Imports: :mod:`analytics`, :mod:`drivers` (the balance terms), :mod:`gateway.config`,
:mod:`gateway.journal`, :mod:`gateway.sinks`, :mod:`gateway.series`, :mod:`gateway.errors`.
"""

from __future__ import annotations

from gateway.analysis._command import load_readings, run_analyze
from gateway.analysis._live import IntervalKpis
from gateway.analysis._results import Analysis, Record

__all__ = ["Analysis", "IntervalKpis", "Record", "load_readings", "run_analyze"]
