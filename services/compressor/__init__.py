"""The compressor: compressions with measured receipts, and context assembly (DESIGN.md §4).

Pure core, bottom to top: ``tokenizer`` and ``spans`` (protected spans by offset), ``text``
(units and clauses), ``engines/`` (extractive, facts, llm), ``quality`` (measurement, never by an
engine), ``purposes`` (per-purpose safety rules), ``contest``, ``receipt``, ``compressor`` (the
entry point the service wires onto the bus) and ``assembly`` (context within a token budget).

The service around it: ``service`` (version events in, ``MemoryCompressed`` out, on the shared
consumer runtime), ``operations`` (the ``receipts`` and ``context`` queries on the bus), ``main``
(``mnemos serve compressor``) and ``metrics``.
"""
