"""Allow ``python -m audioextract``."""

from audioextract.cli import main

raise SystemExit(main())
