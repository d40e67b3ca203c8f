"""cellzoo.analysis."""
