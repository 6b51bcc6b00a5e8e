"""``python -m qr_urandom_server``: same as the ``qr-urandom-server`` console script."""

import sys

from qr_urandom_server.cli import main

sys.exit(main())
