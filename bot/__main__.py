from __future__ import annotations

from bot.cli import entry as main

if __name__ == "__main__":
    raise SystemExit(main())
