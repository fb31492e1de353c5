"""load_settings: explicit overrides, then ATELIER_* variables, then a TOML file, then defaults.
Every call passes ``environ=`` so the real environment never leaks in."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.errors import InvalidParameters
from app.settings import SERVER_WORKERS, Settings, load_settings


@pytest.fixture(autouse=True)
def no_home_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default data dir (and its atelier.toml) comes from XDG_DATA_HOME: keep it in tmp_path."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert settings == Settings(data_dir=str(tmp_path / "xdg" / "atelier"))
    assert (settings.profile, settings.workers, settings.default_model, settings.api_keys) == ("local", 1, "demo", ())
    assert (settings.host, settings.port, settings.device) == ("127.0.0.1", 8000, "auto")


def test_the_environment_is_read(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_WORKERS": "3",
            "ATELIER_PORT": "9001",
            "ATELIER_PROGRESS_INTERVAL": "0.5",
            "ATELIER_DEFAULT_MODEL": "taiyi",
            "ATELIER_DEVICE": "cpu",
        }
    )
    assert settings.data_dir == str(tmp_path / "data")
    assert (settings.workers, settings.port, settings.progress_interval) == (3, 9001, 0.5)
    assert (settings.default_model, settings.device) == ("taiyi", "cpu")


@pytest.mark.parametrize("table", [True, False], ids=["atelier-table", "top-level"])
def test_precedence_overrides_then_environment_then_file_then_defaults(tmp_path: Path, table: bool) -> None:
    data = tmp_path / "data"
    write_toml(
        data / "atelier.toml",
        ("[atelier]\n" if table else "")
        + 'workers = 2\nport = 7000\ndefault_model = "from-file"\ndevice = "cuda"\napi_keys = ["k1", "k2"]\n',
    )
    environ = {"ATELIER_DATA_DIR": str(data), "ATELIER_PORT": "7100", "ATELIER_DEVICE": "cpu"}

    from_file = load_settings(environ={"ATELIER_DATA_DIR": str(data)})
    assert (from_file.workers, from_file.port, from_file.default_model, from_file.device) == (
        2,
        7000,
        "from-file",
        "cuda",
    )
    assert from_file.api_keys == ("k1", "k2")

    from_env = load_settings(environ=environ)
    assert (from_env.workers, from_env.port, from_env.default_model, from_env.device) == (2, 7100, "from-file", "cpu")
    assert from_env.host == "127.0.0.1"  # nobody set it: the default

    overridden = load_settings(environ=environ, device="mps", workers=4, port=None)
    assert (overridden.workers, overridden.port, overridden.device) == (4, 7100, "mps")  # None is no override


def test_atelier_config_names_the_file_instead_of_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_toml(data / "atelier.toml", "workers = 2\n")
    elsewhere = write_toml(tmp_path / "conf" / "custom.toml", "[atelier]\nworkers = 5\n")
    settings = load_settings(environ={"ATELIER_DATA_DIR": str(data), "ATELIER_CONFIG": str(elsewhere)})
    assert settings.workers == 5


def test_the_file_can_choose_the_data_dir(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "atelier.toml", f'data_dir = "{(tmp_path / "from-file").as_posix()}"\n')
    settings = load_settings(environ={"ATELIER_CONFIG": str(config)})
    assert settings.data_dir == str(tmp_path / "from-file")


def test_an_overridden_data_dir_is_where_the_file_is_looked_for(tmp_path: Path) -> None:
    write_toml(tmp_path / "env-dir" / "atelier.toml", "workers = 2\n")
    write_toml(tmp_path / "arg-dir" / "atelier.toml", "workers = 6\n")
    settings = load_settings(
        environ={"ATELIER_DATA_DIR": str(tmp_path / "env-dir")}, data_dir=str(tmp_path / "arg-dir")
    )
    assert (settings.data_dir, settings.workers) == (str(tmp_path / "arg-dir"), 6)


def test_api_keys_are_split_and_trimmed(tmp_path: Path) -> None:
    settings = load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path), "ATELIER_API_KEYS": "a, b,,c"})
    assert settings.api_keys == ("a", "b", "c")
    one = load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path), "ATELIER_API_KEYS": " solo "})
    assert one.api_keys == ("solo",)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ATELIER_WORKERS", "abc"),
        ("ATELIER_WORKERS", "0"),
        ("ATELIER_PORT", "eighty"),
        ("ATELIER_PROGRESS_INTERVAL", "fast"),
        ("ATELIER_MAX_REQUEST_BYTES", "1.5"),
    ],
)
def test_a_malformed_number_is_invalid(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(InvalidParameters):
        load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path), variable: value})


def test_a_malformed_number_in_the_file_is_invalid(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "atelier.toml", 'workers = "many"\n')
    with pytest.raises(InvalidParameters, match="workers"):
        load_settings(environ={"ATELIER_CONFIG": str(config)})


@pytest.mark.parametrize("table", [True, False], ids=["atelier-table", "top-level"])
def test_an_unknown_key_in_the_file_is_named(tmp_path: Path, table: bool) -> None:
    config = write_toml(tmp_path / "atelier.toml", ("[atelier]\n" if table else "") + "workers = 2\ncolour = 'red'\n")
    with pytest.raises(InvalidParameters, match="colour"):
        load_settings(environ={"ATELIER_CONFIG": str(config)})


def test_a_missing_config_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters, match=r"nowhere\.toml"):
        load_settings(environ={"ATELIER_CONFIG": str(tmp_path / "nowhere.toml")})


def test_no_file_in_the_data_dir_is_fine(tmp_path: Path) -> None:
    assert load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path / "empty")}).workers == 1


def test_the_server_profile_needs_a_database_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters, match="ATELIER_DATABASE_URL") as caught:
        load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path), "ATELIER_PROFILE": "server"})
    assert caught.value.code == "missing_database_url"
    url = "postgresql+psycopg://atelier@db/atelier"
    server = load_settings(
        environ={"ATELIER_DATA_DIR": str(tmp_path), "ATELIER_PROFILE": "server", "ATELIER_DATABASE_URL": url}
    )
    assert (server.profile, server.resolved_database_url) == ("server", url)


def test_the_server_profile_defaults_to_more_workers_unless_told(tmp_path: Path) -> None:
    url = "postgresql+psycopg://db/atelier"
    environ = {"ATELIER_DATA_DIR": str(tmp_path), "ATELIER_PROFILE": "server", "ATELIER_DATABASE_URL": url}
    assert load_settings(environ=environ).workers == SERVER_WORKERS > 1
    assert load_settings(environ={**environ, "ATELIER_WORKERS": "1"}).workers == 1
    assert load_settings(environ=environ, workers=1).workers == 1
    write_toml(tmp_path / "atelier.toml", "workers = 1\n")
    assert load_settings(environ=environ).workers == 1
    assert load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path / "local")}).workers == 1


def test_the_server_profile_may_take_its_url_from_the_file(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "atelier.toml", 'database_url = "postgresql+psycopg://db/atelier"\n')
    settings = load_settings(environ={"ATELIER_CONFIG": str(config), "ATELIER_PROFILE": "server"})
    assert settings.resolved_database_url == "postgresql+psycopg://db/atelier"


@pytest.mark.parametrize("where", ["environment", "override", "file"])
def test_an_unknown_profile_is_invalid(tmp_path: Path, where: str) -> None:
    environ = {"ATELIER_DATA_DIR": str(tmp_path)}
    overrides = {}
    if where == "environment":
        environ["ATELIER_PROFILE"] = "production"
    elif where == "override":
        overrides["profile"] = "production"
    else:
        write_toml(tmp_path / "atelier.toml", 'profile = "production"\n')
    with pytest.raises(InvalidParameters, match="production"):
        load_settings(environ=environ, **overrides)


def test_the_database_defaults_to_sqlite_in_the_absolute_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"ATELIER_DATA_DIR": "relative/data"})
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'relative' / 'data' / 'atelier.db'}"
    absolute = load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path / "abs")})
    assert absolute.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'abs' / 'atelier.db'}"


def test_an_explicit_database_url_wins(tmp_path: Path) -> None:
    settings = load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path)}, database_url="sqlite:///elsewhere.db")
    assert settings.resolved_database_url == "sqlite:///elsewhere.db"


# -- found while writing these tests ------------------------------------------------------


def test_a_malformed_config_file_is_invalid(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "atelier.toml", "workers = = 2\n")
    with pytest.raises(InvalidParameters, match=r"atelier\.toml"):
        load_settings(environ={"ATELIER_CONFIG": str(config)})


def test_the_default_data_dir_comes_from_the_given_environ(tmp_path: Path) -> None:
    write_toml(tmp_path / "given" / "atelier" / "atelier.toml", "workers = 3\n")
    settings = load_settings(environ={"XDG_DATA_HOME": str(tmp_path / "given")})
    assert (settings.data_dir, settings.workers) == (str(tmp_path / "given" / "atelier"), 3)


def test_an_unknown_override_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters, match="wrokers"):
        load_settings(environ={"ATELIER_DATA_DIR": str(tmp_path)}, wrokers=2)
