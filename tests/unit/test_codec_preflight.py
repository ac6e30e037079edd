"""Which codecs preflight asks of a venv/existing host, and the packages it names (pure)."""

from __future__ import annotations

from pathlib import Path

from torchbuild.machine.codecs import install_hint, system_packages
from torchbuild.machine.preflight import PreflightRequest, wanted_codecs


def _req(**kw: object) -> PreflightRequest:
    base: dict[str, object] = {"torch_version": "2.9.1", "cuda": "12.8", "archs": (),
                               "python_version": "3.12", "work_dir": Path("/w"),
                               "companions": {"vision": "0.24.1"}, "env_backend": "venv"}
    return PreflightRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_venv_cuda_build_wants_every_codec() -> None:
    assert wanted_codecs(_req()) == ["jpeg", "png", "webp", "nvjpeg"]


def test_cpu_old_vision_conda_and_no_vision() -> None:
    assert wanted_codecs(_req(cpu=True, cuda=None)) == ["jpeg", "png", "webp"]
    assert wanted_codecs(_req(companions={"vision": "0.19.1"}, cpu=True)) == ["jpeg", "png"]
    assert wanted_codecs(_req(env_backend="conda")) == []      # conda.toml brings them
    assert wanted_codecs(_req(companions={"vision": "none"})) == []


def test_allow_missing_drops_a_codec() -> None:
    assert wanted_codecs(_req(allow_missing=("nvjpeg", "webp"))) == ["jpeg", "png"]


def test_package_names_per_family() -> None:
    deb, rpm = system_packages(["jpeg", "png", "webp", "nvjpeg"], "13.0")
    assert deb == ["libjpeg-dev", "libpng-dev", "libwebp-dev", "libnvjpeg-dev-13-0"]
    assert rpm == ["libjpeg-turbo-devel", "libpng-devel", "libwebp-devel", "libnvjpeg-devel-13-0"]
    hint = install_hint(["webp"], None)
    assert "sudo apt-get install libwebp-dev" in hint and "--allow-missing webp" in hint
