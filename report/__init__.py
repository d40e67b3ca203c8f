"""The static HTML report of a search: reads the zoo and the run directories."""
