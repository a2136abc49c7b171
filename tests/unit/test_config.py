"""Configuration: every setting is documented in the README, and bad values are typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.events import InvalidInput
from libs.runtime.config import Config, load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readme_configuration_table() -> None:
    text = README.read_text()
    missing = [name for name in Config.model_fields if f"| `MNEMOS_{name.upper()}` |" not in text]
    assert missing == []


def test_settings_come_from_mnemos_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_HNSW_EF_SEARCH", "120")
    assert load_config().hnsw_ef_search == 120


@pytest.mark.parametrize("value", ["0", "5000", "many"])
def test_an_out_of_range_ef_search_is_invalid_input(monkeypatch: pytest.MonkeyPatch,
                                                     value: str) -> None:
    monkeypatch.setenv("MNEMOS_HNSW_EF_SEARCH", value)
    with pytest.raises(InvalidInput, match="hnsw_ef_search"):
        load_config()
