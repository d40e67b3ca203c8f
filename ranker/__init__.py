"""cellzoo.ranker."""
