"""``python -m client``: the terminal chat (see ``client.cli``)."""

from __future__ import annotations

from client.cli import main

raise SystemExit(main())
