"""``python -m nn3`` runs the ``nn3`` command."""
import sys

try:
    from nn3.cli import main
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds, before main's handlers
    sys.exit(130)

sys.exit(main())
