"""ehr — electronic medical records (TT 46/2018 → TT 13/2025, CV 365): forms, versions, signatures,
access with break-glass, retention, export. Depends on his and core only."""
