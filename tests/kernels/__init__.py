"""Analytics kernels: public functions against their plain twins (``reference_energy``, ``reference_flex``)."""
