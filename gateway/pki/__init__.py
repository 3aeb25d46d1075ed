"""The hospital's evidence CA and the certificates it issues."""
