"""lis — laboratory: orders, specimens, analysers over HL7 v2 / MLLP, validation, reference ranges.
Depends on his and core only."""
