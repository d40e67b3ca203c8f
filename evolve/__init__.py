"""cellzoo.evolve."""
