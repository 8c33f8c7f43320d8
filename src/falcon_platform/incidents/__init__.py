"""Incidents and postmortems computed from data (issue 15).

``model`` (the record, severities, the status table), ``signals`` and ``decide`` (pure:
which journal events open, join, clear), ``store`` (SQL), ``service`` (load, decide, save,
journal), ``watcher`` (the supervisor's periodic reader of the journal).
"""
