"""Settings come from STARGRAPH_* variables and .env; a bad value stops start-up by name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from stargraph.settings import PROJECT_ROOT, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STARGRAPH_* from the caller's shell, and no .env but the test's own."""
    for name in list(os.environ):
        if name.startswith("STARGRAPH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite://./stargraph.db"
    assert settings.redis_url is None
    assert (settings.price_per_image, settings.signup_points) == (10, 100)
    assert settings.comfyui_urls == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STARGRAPH_PRICE_PER_IMAGE", "-1"),
        ("STARGRAPH_SIGNUP_POINTS", "lots"),
        ("STARGRAPH_TRANSLATION_FALLBACK", "maybe"),
        ("STARGRAPH_COMFYUI_MAX_INFLIGHT", "0"),
        ("STARGRAPH_REDIS_PREFIX", "has space"),
        ("STARGRAPH_COMFYUI_URLS", "gpu2:8188"),
        ("STARGRAPH_OLLAMA_URL", "127.0.0.1:11434"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert variable in str(err.value)
    assert repr(value) in str(err.value)


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARGRAPH_PRICE_PER_IMAGE", "-1")
    monkeypatch.setenv("STARGRAPH_JOB_TIMEOUT_S", "0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "STARGRAPH_PRICE_PER_IMAGE" in message and "STARGRAPH_JOB_TIMEOUT_S" in message


def test_comma_lists_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARGRAPH_COMFYUI_URLS", "http://gpu1:8188, http://gpu2:8188,,")
    monkeypatch.setenv("STARGRAPH_SAMPLERS", "euler")
    monkeypatch.setenv("STARGRAPH_ALLOWED_ORIGINS", "")
    settings = load_settings()
    assert settings.comfyui_urls == ["http://gpu1:8188", "http://gpu2:8188"]
    assert settings.samplers == ["euler"]
    assert settings.allowed_origins == []


def test_the_env_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("STARGRAPH_PRICE_PER_IMAGE=7\nSTARGRAPH_SIGNUP_POINTS=5\n")
    monkeypatch.setenv("STARGRAPH_SIGNUP_POINTS", "9")
    settings = load_settings()
    assert (settings.price_per_image, settings.signup_points) == (7, 9)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.price_per_image = 1  # type: ignore[misc]


def test_the_readme_documents_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(STARGRAPH_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {f"STARGRAPH_{name.upper()}" for name in Settings.model_fields}


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"## Test\n\n```sh\n(.+)\n```", readme)
    assert command is not None
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command.group(1) in ci
