"""pacs — DICOM node, worklist, DICOMweb and previews. Depends on his and core only."""
