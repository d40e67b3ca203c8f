"""`python -m cellzoo.cli`: the same as the `cellzoo` command."""

from cellzoo.cli import main

main()
