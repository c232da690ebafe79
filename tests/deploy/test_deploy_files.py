"""deploy/ is what the server reads: checked with the tools that run it, where they can run.

- deploy/systemd/circle.service: `systemd-analyze verify` (no running systemd needed);
- deploy/docker-compose.yml: `docker compose config` where Docker's compose plugin is
  installed (these machines have only the docker client: then a warning says so), and
  always statically: its structure, the files it mounts and builds from, its CIRCLE_* names;
- deploy/circle.env.example: every name in it is a setting of the server, every setting is
  in it, and the file as written is accepted by the settings model;
- no file in deploy/ (or docs/operations.md) still calls itself untested or planned.

nginx's config is checked by tests/integration/test_nginx_config.py and coturn's by
test_turn_relay.py (coturn started from it); the Dockerfile by test_package.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import Settings
from tests.ci import unavailable

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "circle.service"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "circle.env.example"
SETTING_NAMES = {f"CIRCLE_{name.upper()}" for name in Settings.model_fields}
NAME = re.compile(r"\bCIRCLE_[A-Z0-9_]*[A-Z0-9]\b")


def circle_names(text: str) -> set[str]:
    return set(NAME.findall(text))


# -- systemd ----------------------------------------------------------------------------------


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze not found (scripts/services.sh ensure_systemd_analyze)")
    text = UNIT.read_text()
    shipped = "ExecStart=/opt/circle/venv/bin/circle "
    assert text.count(shipped) == 1, "the unit runs the venv's circle (docs/operations.md)"
    # verify checks that ExecStart exists: point it at this machine's circle, nothing else.
    circle = Path(sys.executable).with_name("circle")
    unit = tmp_path / "circle.service"
    unit.write_text(text.replace(shipped, f"ExecStart={circle} "))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    # An unknown or misspelt directive is only a message (exit 0): none may be printed.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr)


def test_systemd_analyze_would_catch_a_misspelt_directive(tmp_path: Path) -> None:
    """The check above is not vacuous: the same call reports a typo in the sandbox."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze not found (scripts/services.sh ensure_systemd_analyze)")
    circle = Path(sys.executable).with_name("circle")
    unit = tmp_path / "circle.service"
    unit.write_text(UNIT.read_text()
                    .replace("ExecStart=/opt/circle/venv/bin/circle ", f"ExecStart={circle} ")
                    .replace("ProtectProc=invisible", "ProtectProcess=invisible"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert "Unknown key 'ProtectProcess'" in done.stdout + done.stderr


def test_the_units_settings_are_settings() -> None:
    assert circle_names(UNIT.read_text()) <= SETTING_NAMES


# -- compose ----------------------------------------------------------------------------------

TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {
    "image", "build", "restart", "environment", "env_file", "volumes", "ports", "command",
    "entrypoint", "healthcheck", "depends_on", "network_mode", "networks", "read_only", "tmpfs",
    "security_opt", "cap_drop", "cap_add", "stop_grace_period", "user", "ulimits", "logging",
    "working_dir", "expose", "labels", "stop_signal", "init", "mem_limit", "pids_limit",
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_shape_of_a_compose_file() -> None:
    doc = compose()
    assert set(doc) <= TOP_LEVEL, set(doc) - TOP_LEVEL
    services = doc["services"]
    assert set(services) == {"postgres", "redis", "circle", "coturn", "nginx"}
    volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        if service.get("network_mode") == "host":
            assert "ports" not in service, f"{name}: host networking publishes no ports"
        depends = service.get("depends_on") or {}
        conditions = depends if isinstance(depends, dict) else {d: {} for d in depends}
        for dependency, condition in conditions.items():
            assert dependency in services, (name, dependency)
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
        for mount in service.get("volumes") or ():
            source = str(mount).split(":", 1)[0]
            if source.startswith((".", "/")):
                continue
            assert source in volumes, f"{name}: volume {source} is not declared"


def test_compose_builds_from_the_dockerfile_and_mounts_files_that_exist() -> None:
    services = compose()["services"]
    build = services["circle"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    for name, service in services.items():
        for mount in service.get("volumes") or ():
            source = str(mount).split(":", 1)[0]
            if not source.startswith("./"):
                continue
            # Either shipped in deploy/, or made by the usage steps at the top (cp ... NAME).
            made = re.search(rf"cp \S+ {re.escape(source[2:])}\b", header)
            assert (DEPLOY / source).is_file() or made, f"{name}: {source} is neither here "
            "nor made by the usage steps"
    env_file = services["circle"]["env_file"]
    assert re.search(rf"cp circle\.env\.example {re.escape(env_file)}\b", header)


def test_compose_names_only_real_settings() -> None:
    text = COMPOSE.read_text()
    assert circle_names(text) <= SETTING_NAMES, circle_names(text) - SETTING_NAMES
    environment = compose()["services"]["circle"]["environment"]
    assert set(environment) <= SETTING_NAMES
    # The stack's Redis is the one of the several-nodes setting (docs/operations.md).
    assert "CIRCLE_REDIS_URL=redis://127.0.0.1:6379/0" in text


def test_docker_compose_config_accepts_it_where_compose_is_installed(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                       timeout=30).returncode == 0
    if not plugin:
        warnings.warn("docker compose is not installed here: deploy/docker-compose.yml was "
                      "checked statically only (the tests above)", stacklevel=1)
        return
    assert docker is not None
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(ENV_EXAMPLE, tmp_path / "deploy" / "circle.env")
    shutil.copy(DEPLOY / "coturn" / "turnserver.conf", tmp_path / "deploy" / "turnserver.conf")
    done = subprocess.run([docker, "compose", "-f", str(tmp_path / "deploy" / COMPOSE.name),
                           "config", "--quiet"], capture_output=True, text=True, timeout=60,
                          env={"POSTGRES_PASSWORD": "example", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


# -- settings in the examples ---------------------------------------------------------------------


def example_lines() -> dict[str, str]:
    """The KEY=value lines of the env example that are not commented out."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key == key.strip(), f"not KEY=value: {line!r}"
            found[key] = value
    return found


def test_every_name_in_the_env_example_is_a_setting_and_every_setting_is_in_it() -> None:
    named = circle_names(ENV_EXAMPLE.read_text())
    assert named - SETTING_NAMES == set(), "names the server ignores"
    assert SETTING_NAMES - named == set(), "settings deploy/circle.env.example does not show"


def test_the_env_example_as_written_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("CIRCLE_")]:
        monkeypatch.delenv(key)
    for key, value in example_lines().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.turn_secret is not None and len(settings.turn_urls) == 3
    assert settings.base_url.startswith("https://")


def test_no_deploy_file_calls_itself_untested_or_planned() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "docs" / "operations.md"]
    stale = re.compile(r"not tested|\bplanned\b|\bproposed\b", flags=re.I)
    found = {str(p.relative_to(ROOT)): m.group(0) for p in files
             if (m := stale.search(p.read_text(errors="replace")))}
    assert not found, found
