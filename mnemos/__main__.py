"""``python -m mnemos`` is the ``mnemos`` command."""

from mnemos.cli import main

main()
