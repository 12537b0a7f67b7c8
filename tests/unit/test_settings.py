"""Settings: defaults, file and environment precedence, one-line errors that name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import platformdirs
import pytest

from risk_zoning.io.database import describe_database
from warnings_svc.settings import (
    Settings,
    SettingsError,
    database_source,
    load_settings,
    load_settings_with_sources,
)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line_naming(error: SettingsError, *parts: str) -> None:
    message = str(error)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_with_no_file_and_no_environment_every_setting_has_its_default() -> None:
    settings = load_settings(None, {})
    assert settings == Settings(
        database_url=None,
        data_dir=platformdirs.user_data_path("warnings-svc"),
        host="127.0.0.1",
        port=8080,
        region="wuhai",
        log_level="INFO",
    )


def test_a_file_sets_every_key_it_names(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'database_url = "postgresql://svc@db.example/warnings"\n'
        'data_dir = "/var/lib/warnings-svc"\n'
        'host = "0.0.0.0"\nport = 9000\nregion = "wuhai"\nlog_level = "debug"\n',
    )
    settings = load_settings(path, {})
    assert settings.database_url == "postgresql://svc@db.example/warnings"
    assert settings.data_dir == Path("/var/lib/warnings-svc")
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 9000, "DEBUG")


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'database_url = "postgresql://file/db"\nport = 9000\nhost = "10.0.0.1"\n')
    env = {
        "DATABASE_URL": "postgresql://env/db",
        "WARNINGS_SVC_PORT": "9100",
        "WARNINGS_SVC_HOST": "127.0.0.2",
        "WARNINGS_SVC_DATA_DIR": str(tmp_path / "env-data"),
    }
    settings = load_settings(path, env)
    assert settings.database_url == "postgresql://env/db"
    assert settings.port == 9100
    assert settings.host == "127.0.0.2"
    assert settings.data_dir == tmp_path / "env-data"


def test_command_line_options_override_the_environment(tmp_path: Path) -> None:
    settings = load_settings(None, {"WARNINGS_SVC_PORT": "9100"}, {"port": 9200, "data_dir": tmp_path})
    assert (settings.port, settings.data_dir) == (9200, tmp_path)


def test_an_empty_environment_variable_leaves_the_file_value_in_place(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = 9000\n")
    assert load_settings(path, {"WARNINGS_SVC_PORT": ""}).port == 9000


def test_a_relative_data_dir_in_a_file_is_relative_to_that_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'data_dir = "state"\n')
    assert load_settings(path, {}).data_dir == tmp_path / "state"


def test_malformed_toml_gives_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = \n[broken\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "malformed TOML", "line 1")


def test_an_unknown_key_gives_one_line_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "prot = 8080\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "unknown key 'prot'", "did you mean 'port'")


@pytest.mark.parametrize("value", ["0", "70000", '"8080"', "80.5", "true"])
def test_a_bad_port_gives_one_line_naming_the_file_and_the_field(tmp_path: Path, value: str) -> None:
    path = write_config(tmp_path, f"port = {value}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "port:")


def test_a_bad_port_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write_config(tmp_path, ""), {"WARNINGS_SVC_PORT": "eighty"})
    assert_one_line_naming(caught.value, "WARNINGS_SVC_PORT", "port:", "not an integer")


@pytest.mark.parametrize("value", ["0", "65", '"2"', "1.5"])
def test_a_bad_web_worker_count_gives_one_line_naming_the_file_and_the_field(
    tmp_path: Path, value: str
) -> None:
    path = write_config(tmp_path, f"web_workers = {value}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "web_workers:")


def test_the_web_worker_count_comes_from_the_file_then_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, "web_workers = 3\n")
    assert load_settings(path, {}).web_workers == 3
    assert load_settings(path, {"WARNINGS_SVC_WEB_WORKERS": "4"}).web_workers == 4
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {"WARNINGS_SVC_WEB_WORKERS": "two"})
    assert_one_line_naming(caught.value, "WARNINGS_SVC_WEB_WORKERS", "web_workers:", "not an integer")


def test_writes_go_first_unless_the_file_or_the_environment_says_otherwise(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, ""), {}).writes_first is True
    path = write_config(tmp_path, "writes_first = false\n")
    assert load_settings(path, {}).writes_first is False
    assert load_settings(path, {"WARNINGS_SVC_WRITES_FIRST": "yes"}).writes_first is True


def test_the_access_log_is_on_unless_the_file_or_the_environment_turns_it_off(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, ""), {}).access_log is True
    path = write_config(tmp_path, "access_log = false\n")
    assert load_settings(path, {}).access_log is False
    assert load_settings(path, {"WARNINGS_SVC_ACCESS_LOG": "on"}).access_log is True
    assert load_settings(path, {"WARNINGS_SVC_ACCESS_LOG": " No "}).access_log is False
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {"WARNINGS_SVC_ACCESS_LOG": "maybe"})
    assert_one_line_naming(caught.value, "WARNINGS_SVC_ACCESS_LOG", "access_log:", "not true or false")
    with pytest.raises(SettingsError) as caught:
        load_settings(write_config(tmp_path, 'access_log = "false"\n'), {})
    assert_one_line_naming(caught.value, "access_log:")


def test_a_wrong_type_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, "host = 127\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "host:", "valid string")


def test_an_unknown_log_level_names_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'log_level = "chatty"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "log_level:")


def test_a_missing_file_gives_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "no such file")


def test_a_database_url_is_never_echoed_in_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'database_url = ["postgresql://svc:secret@db/warnings"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert_one_line_naming(caught.value, str(path), "database_url:")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("file_text", "env", "overrides", "source"),
    [
        ("", {}, {}, "the default; WARNINGS_SVC_DATA_DIR or --data-dir choose another"),
        ('data_dir = "state"\n', {}, {}, "{config}"),
        (
            'data_dir = "state"\n',
            {"WARNINGS_SVC_DATA_DIR": "/srv/w"},
            {},
            "environment variable WARNINGS_SVC_DATA_DIR",
        ),
        ("", {"WARNINGS_SVC_DATA_DIR": "/srv/w"}, {"data_dir": Path("/opt/w")}, "option --data-dir"),
        (
            "",
            {"DATABASE_URL": "postgresql://db/w"},
            {"data_dir": Path("/opt/w")},
            "environment variable DATABASE_URL",
        ),
        ('database_url = "postgresql://db/w"\n', {}, {}, "{config}"),
    ],
    ids=["default", "file", "environment", "option", "url from the environment", "url from the file"],
)
def test_the_source_of_the_database_is_the_setting_that_chose_it(
    tmp_path: Path, file_text: str, env: dict[str, str], overrides: dict[str, Path], source: str
) -> None:
    path = write_config(tmp_path, file_text)
    settings, sources = load_settings_with_sources(path, env, overrides)
    assert database_source(settings, sources) == source.format(config=path)
    assert settings == load_settings(path, env, overrides)


def test_the_database_line_never_shows_a_password() -> None:
    for url in ("postgresql://svc:hunter2@db/w", "postgresql://svc@db/w?sslmode=require&password=hunter2"):
        line = describe_database(url, Path("/unused"), "environment variable DATABASE_URL")
        assert "hunter2" not in line and "***" in line
        assert line.startswith("database: postgresql://svc") and line.endswith(
            "(environment variable DATABASE_URL)"
        )


def test_the_database_line_names_the_embedded_servers_folder(tmp_path: Path) -> None:
    line = describe_database(None, tmp_path / "data" / ".." / "data", "option --data-dir")
    assert line == f"database: embedded PostgreSQL in {(tmp_path / 'data').resolve()} (option --data-dir)"


def test_only_the_environment_passed_in_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARNINGS_SVC_PORT", "1234")
    assert load_settings(None, {}).port == 8080


def test_every_key_of_the_example_configuration_is_a_known_setting(tmp_path: Path) -> None:
    """deploy/warnings-svc.example.toml with every commented key switched on loads (a renamed or mistyped key
    in the example would be an unknown-key error here)."""
    example = Path(__file__).parents[2] / "deploy" / "warnings-svc.example.toml"
    lines = []
    for line in example.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^# ?(\[\[?[a-z._]+\]\]?|[a-z_]+ = .*)$", line)
        setting = match.group(1) if match else ""
        lines.append(setting if setting.startswith("[") else re.sub(r"\s+#\s.*$", "", setting))
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    settings = load_settings(path, {})
    assert settings.dispatch.sms[0].name == "cmcc" and settings.warnings.sms_segments == 3
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32", "::1/128"]
    assert settings.dispatch.sms[0].password_file == tmp_path / "keys" / "smsc-cmcc.password"
    assert settings.dispatch.area_sms[0].token_file == tmp_path / "keys" / "china-mobile.token"
    assert [t[:2] for t in settings.dispatch.area_targets()] == [
        ("mqtt", "terminals"), ("area_sms", "china-mobile"), ("cell_broadcast", "cbc"),
        ("broadcast_platform", "county-platform"), ("radio_tv", "wuhai-tv"),
    ]  # fmt: skip
    assert settings.coverage.checkpoints_min["red"] == (10, 15, 20, 30)
    assert settings.coverage.escalation.ladders["blue"] == ()


def test_area_channel_targets_are_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    cases = {
        '[[dispatch.mqtt]]\nurl = "http://broker"\n': "url",
        '[[dispatch.mqtt]]\nurl = "mqtt://b"\nlevels = ["purple"]\n': "levels",
        '[[dispatch.area_sms]]\nname = "x"\nroutes = []\n': "routes",
        '[[dispatch.area_sms]]\nname = "x"\nroutes = ["https://a"]\ntoken = "t"\ntoken_file = "f"\n': "token or token_file",
        '[[dispatch.cell_broadcast]]\nname = "c"\nroutes = ["https://a"]\nreach_share = 1.5\n': "reach_share",
        '[[dispatch.mqtt]]\nurl = "mqtt://a"\n[[dispatch.mqtt]]\nurl = "mqtt://b"\n': "names must be unique",
        '[[dispatch.broadcast_platform]]\nname = "p"\nroutes = ["https://a"]\nsecret = "s"\n': "secret",
    }
    for text, named in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SettingsError, match=named):
            load_settings(path, {})


def test_an_sms_endpoint_with_both_passwords_or_duplicate_names_is_refused(tmp_path: Path) -> None:
    endpoint = 'host = "127.0.0.1"\nport = 2775\nsystem_id = "w"\n'
    path = tmp_path / "s.toml"
    path.write_text(f'[[dispatch.sms]]\n{endpoint}password = "x"\npassword_file = "p"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="password or password_file"):
        load_settings(path, {})
    path.write_text(f"[[dispatch.sms]]\n{endpoint}\n[[dispatch.sms]]\n{endpoint}", encoding="utf-8")
    with pytest.raises(SettingsError, match="names must be unique"):
        load_settings(path, {})


def test_a_bad_token_or_route_is_refused_without_echoing_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    secret = "s3cret-" + "x" * 400
    path.write_text(
        f'[[dispatch.area_sms]]\nname = "x"\nroutes = ["https://a"]\ntoken = "{secret}"\n', encoding="utf-8"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert "token" in str(caught.value) and "s3cret" not in str(caught.value)
    for route in ("https://user:pw@gw.example.cn", "https://gw.example.cn/x?key=pw"):
        path.write_text(f'[[dispatch.area_sms]]\nname = "x"\nroutes = ["{route}"]\n', encoding="utf-8")
        with pytest.raises(SettingsError, match="routes"):
            load_settings(path, {})


@pytest.mark.parametrize(
    ("prefix", "refused"),
    [
        ("wuhai/partners", False),
        ("partners", False),
        ("wuhai", True),
        ("wuhai/alerts/x", True),
        ("wuhai/ack", True),
    ],
)
def test_partner_topics_never_land_on_the_terminals_topics(
    tmp_path: Path, prefix: str, refused: bool
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[dispatch.mqtt]]\nname = "terminals"\nurl = "mqtt://127.0.0.1:1883"\ntopic_prefix = "wuhai"\n'
        f'[partners]\nmqtt_broker = "terminals"\nmqtt_topic_prefix = "{prefix}"\n'
    )
    if refused:
        with pytest.raises(SettingsError, match="overlaps the terminals' topics"):
            load_settings(config, {})
    else:
        assert load_settings(config, {}).partners.mqtt_topic_prefix == prefix


def test_coverage_checkpoints_out_of_order_are_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[coverage.checkpoints_min]\nred = [30, 10]\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"checkpoints_min.*increasing order"):
        load_settings(path, {})
