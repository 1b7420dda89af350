"""`python -m livecap`: the command line."""

from livecap.cli import main

main()
