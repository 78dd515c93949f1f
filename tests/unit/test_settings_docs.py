"""docs/settings.md documents every operator setting, and nothing that does not exist."""

import re
from pathlib import Path

from audioextract.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_has_a_row_and_every_row_a_setting() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    rows = set(re.findall(r"^\| `(AUDIOEXTRACT_[A-Z0-9_]+)` \|", DOC.read_text(), re.M))
    assert fields - rows == set(), "settings missing from docs/settings.md"
    assert rows - fields == set(), "docs/settings.md rows for settings that do not exist"
