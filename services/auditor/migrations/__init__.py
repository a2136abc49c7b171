"""SQL migrations of the auditor (component ``auditor``)."""
