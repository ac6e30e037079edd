"""`docker env`: the .env and build args derived from a given set of options (pure logic)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from torchbuild.commands import docker
from torchbuild.errors import UsageError
from torchbuild.options import resolve

ALICE = docker.Container(train_name="Alice", uid=1001, gid=1002, tz="Asia/Seoul")


def values_for(cli: dict[str, object], container: docker.Container = ALICE) -> dict[str, str]:
    return docker.env_values(resolve(cli, {}), container)


def parse_docker_argv(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    docker.register(parser.add_subparsers())
    return parser.parse_args(["docker", *argv])


def test_env_values_for_a_cuda_build() -> None:
    values = values_for({"cc": "8.6", "torch": "2.9.1", "cuda": "12.8", "python": "3.12"})
    assert values["TB_CC"] == "8.6"
    assert values["TB_CPU"] == "0"
    assert values["TB_TORCH"] == "2.9.1"
    assert values["TB_CUDA"] == "12.8"
    assert values["TB_PYTHON"] == "3.12"
    assert values["UID"] == "1001" and values["GID"] == "1002" and values["TZ"] == "Asia/Seoul"
    assert values["BASE"] == "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04"
    assert values["TRAIN_BASE"] == "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
    assert values["TRAIN_IMAGE"] == "torchbuild-train:alice-2.9.1-cu128-sm86-py3.12"
    assert values["COMPOSE_PROJECT_NAME"] == "torchbuild-alice"


def test_spellings_of_the_same_cc_give_the_same_build_args() -> None:
    """The cache key must not depend on how the user typed --cc."""
    spellings = ("7.5 8.6", "8.6,7.5", "8.6;7.5", " 7.5  8.6 7.5")
    args = {s: docker.build_args(resolve({"cc": s, "torch": "2.9.1"}, {})) for s in spellings}
    first = args[spellings[0]]
    assert all(a == first for a in args.values())
    assert first["TB_CC"] == "7.5 8.6"


def test_per_user_values_do_not_touch_the_build_args() -> None:
    """Alice and Bob share one build (one cache) and get their own training images."""
    cli = {"cc": "8.6", "torch": "2.9.1", "cuda": "12.8"}
    bob = docker.Container(train_name="bob", uid=2000, gid=2000, tz="UTC")
    alice_values, bob_values = values_for(cli), values_for(cli, bob)
    for key in docker.BUILD_ARG_KEYS:
        assert alice_values[key] == bob_values[key], key
    assert alice_values["TRAIN_IMAGE"] != bob_values["TRAIN_IMAGE"]
    assert alice_values["UID"] != bob_values["UID"]


def test_other_options_travel_in_a_fixed_order() -> None:
    a = docker.build_args(resolve({"cc": "8.6", "jobs": "4", "set": ["USE_X=0"],
                                   "compiler_cache": "ccache"}, {}))
    b = docker.build_args(resolve({"compiler_cache": "ccache", "set": ["USE_X=0"], "jobs": "4",
                                   "cc": "8.6"}, {}))
    assert a == b
    assert a["TB_EXTRA_ARGS"] == "--jobs 4 --set USE_X=0 --compiler-cache ccache"


def test_options_from_the_environment_count_like_cli_ones() -> None:
    from_env = docker.build_args(resolve({}, {"TORCHBUILD_CC": "8.6", "TORCHBUILD_JOBS": "2"}))
    from_cli = docker.build_args(resolve({"cc": "8.6", "jobs": "2"}, {}))
    assert from_env == from_cli


def test_host_paths_are_refused() -> None:
    with pytest.raises(UsageError, match="--lock"):
        docker.build_args(resolve({"cc": "8.6", "lock": "/home/me/conda-lock.yml"}, {}))


def test_cpu_build_uses_a_plain_base_and_no_cuda() -> None:
    values = values_for({"cpu": True, "torch": "2.9.1"})
    assert values["TB_CPU"] == "1" and values["TB_CC"] == "" and values["TB_CUDA"] == ""
    assert values["BASE"] == docker.CPU_BASE
    assert "-cpu" in values["TRAIN_IMAGE"]


@pytest.mark.parametrize(("cuda", "distro", "base"), [
    ("11.8", None, "nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"),
    ("12.4", None, "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04"),
    ("13.0", None, "nvidia/cuda:13.0.1-cudnn-devel-ubuntu24.04"),
    ("13.0", "rockylinux9", "nvidia/cuda:13.0.1-cudnn-devel-rockylinux9"),
    ("13.7", "ubi9", "nvidia/cuda:13.7.0-cudnn-devel-ubi9"),
])
def test_cuda_images_have_full_version_tags(cuda: str, distro: str | None, base: str) -> None:
    container = docker.Container(train_name="x", uid=1, gid=1, tz="UTC", distro=distro)
    assert values_for({"cc": "8.6", "torch": "2.9.1", "cuda": cuda}, container)["BASE"] == base


def test_bad_cuda_version_asks_for_a_base() -> None:
    with pytest.raises(UsageError, match="X.Y"):
        values_for({"cc": "8.6", "cuda": "12"})


def test_explicit_bases_win() -> None:
    container = docker.Container(train_name="x", uid=1, gid=1, tz="UTC",
                                 base="localhost/b:1", train_base="localhost/t:1")
    values = values_for({"cc": "8.6", "cuda": "12.8"}, container)
    assert (values["BASE"], values["TRAIN_BASE"]) == ("localhost/b:1", "localhost/t:1")


def test_recipe_defaults_are_written_out() -> None:
    """No --torch: the recipe's newest release and its default CUDA become explicit args."""
    options = docker.with_recipe_defaults(resolve({"cc": "8.6"}, {}))
    assert options.torch and options.cuda
    pinned = docker.with_recipe_defaults(resolve({"cc": "8.6", "torch": options.torch}, {}))
    assert docker.build_args(options) == docker.build_args(pinned)


def test_smoke_defaults_to_a_cpu_venv_build() -> None:
    args = parse_docker_argv("env", "--smoke", "--uid", "5", "--gid", "6", "--tz", "UTC",
                             "--train-name", "ci")
    container = docker.container_settings(args, {})
    options = docker.resolve_options(args, {}, container)
    built = docker.build_args(options, smoke=True)
    assert (built["TB_SMOKE"], built["TB_CPU"], built["TB_ENV"]) == ("1", "1", "venv")
    assert built["TB_TORCH"] == ""  # the fixture recipe picks its own "torch"


def test_env_file_round_trips_and_keeps_the_users_additions(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    values = values_for({"cc": "7.5 8.6", "torch": "2.9.1", "cuda": "12.8"})
    docker.write_env_file(path, values)
    assert docker.parse_env_file(path.read_text(encoding="utf-8")) == values
    text = path.read_text(encoding="utf-8")
    assert 'TB_CC="7.5 8.6"' in text
    text = text.replace('EXTRA_PIP_PACKAGES=""', 'EXTRA_PIP_PACKAGES="einops==0.8.0 timm"')
    path.write_text(text + "SHM_SIZE=32gb\n", encoding="utf-8")
    newer = values_for({"cc": "8.6", "torch": "2.9.1", "cuda": "12.8"})
    merged = docker.write_env_file(path, newer)
    again = docker.parse_env_file(path.read_text(encoding="utf-8"))
    assert again == merged
    assert again["TB_CC"] == "8.6"  # derived values are regenerated
    assert again["EXTRA_PIP_PACKAGES"] == "einops==0.8.0 timm"  # the user's are kept
    assert again["SHM_SIZE"] == "32gb"


def test_project_dir_is_absolute_and_kept_once_chosen(tmp_path: Path) -> None:
    here = docker.Container(train_name="x", uid=1, gid=1, tz="UTC", project_dir=tmp_path)
    path = tmp_path / ".env"
    first = docker.write_env_file(path, values_for({"cc": "8.6", "cuda": "12.8"}, here))
    assert first["PROJECT_DIR"] == str(tmp_path)
    moved = docker.Container(train_name="x", uid=1, gid=1, tz="UTC", project_dir=Path("/srv"))
    again = docker.write_env_file(path, values_for({"cc": "8.6", "cuda": "12.8"}, moved))
    assert again["PROJECT_DIR"] == str(tmp_path)


def test_root_user_is_flagged_in_the_env_file() -> None:
    root = docker.Container(train_name="r", uid=0, gid=0, tz="UTC")
    cli = {"cc": "8.6", "cuda": "12.8"}

    def notes(container: docker.Container) -> list[str]:
        text = docker.render_env_file(values_for(cli, container))
        return [ln for ln in text.splitlines() if ln.startswith("#") and "root" in ln]

    assert notes(root) and not notes(ALICE)


def test_commands_share_the_build_args(tmp_path: Path) -> None:
    values = values_for({"cc": "8.6", "torch": "2.9.1", "cuda": "12.8"})
    export, = docker.plan_commands("export", values, tmp_path, tmp_path / ".env", Path("out"))
    build, up = docker.plan_commands("up", values, tmp_path, tmp_path / ".env", Path("out"))

    def build_args(argv: list[str]) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"]

    # The build stage sees identical args from `export` and `build`: one cache for both.
    shared = [a for a in build_args(build) if a.split("=")[0] in docker.BUILD_ARG_KEYS]
    assert build_args(export) == shared
    assert export[export.index("--target") + 1] == "export"
    assert "type=local,dest=out" in export
    assert build[build.index("-t") + 1] == values["TRAIN_IMAGE"]
    assert up[:2] == ["docker", "compose"] and up[-1] == "train"


def test_host_timezone_prefers_tz_then_etc(tmp_path: Path) -> None:
    assert docker.host_timezone({"TZ": ":Europe/Paris"}, tmp_path) == "Europe/Paris"
    (tmp_path / "timezone").write_text("America/Chicago\n", encoding="utf-8")
    assert docker.host_timezone({}, tmp_path) == "America/Chicago"
    (tmp_path / "timezone").unlink()
    (tmp_path / "zoneinfo" / "Asia").mkdir(parents=True)
    (tmp_path / "zoneinfo" / "Asia" / "Tokyo").write_text("", encoding="utf-8")
    (tmp_path / "localtime").symlink_to(tmp_path / "zoneinfo" / "Asia" / "Tokyo")
    assert docker.host_timezone({}, tmp_path) == "Asia/Tokyo"
