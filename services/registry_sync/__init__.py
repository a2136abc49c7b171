"""The reasoning layer's core: registry sync, routing and consultations (design section 7).

Pure at the bottom (``records``, ``ranking``, ``state``, ``diff``, ``routing``,
``consensus``), loaders above (``prices``, ``leaderboard``), orchestration on top (``sync``,
``consult``); the bus and database wiring is the lead's.
"""
