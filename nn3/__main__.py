"""``python -m nn3`` runs the ``nn3`` command."""
import sys

from nn3.cli import main

sys.exit(main())
