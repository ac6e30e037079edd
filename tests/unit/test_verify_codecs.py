"""verify's codec and linear-algebra checks: the test images the probe writes are real images
(checked with Pillow, an independent decoder), and the report enforces exactly the codecs the
vision step built. Pure: no processes, no torch."""

from __future__ import annotations

import base64
import importlib.util
import io
from types import ModuleType
from typing import Any

import pytest

from torchbuild.proof.verify import (
    PROBE,
    VerifyRequest,
    _check_codecs,
    _check_smoke,
    request_from_manifest,
)

PIL = pytest.importorskip("PIL.Image")


def _probe_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_probe", PROBE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # __main__-guarded: importing runs nothing
    return module


probe = _probe_module()


def test_the_handwritten_png_is_the_gradient() -> None:
    img = PIL.open(io.BytesIO(probe.png_bytes(probe.gradient()))).convert("RGB")
    assert img.size == (8, 8)
    assert [[img.getpixel((x, y)) for x in range(8)] for y in range(8)] == probe.gradient()


def test_the_embedded_jpeg_is_the_gradient_within_jpeg_error() -> None:
    img = PIL.open(io.BytesIO(base64.b64decode(probe.JPEG_8X8))).convert("RGB")
    rows = [[img.getpixel((x, y)) for x in range(8)] for y in range(8)]
    assert probe.close(rows, probe.gradient(), 16)
    assert not probe.close(rows, [[(0, 0, 0)] * 8] * 8, 16)


def _ok(value: bool) -> dict[str, Any]:
    return {"ok": True, "value": value}


def test_codec_checks_enforce_only_what_was_built() -> None:
    entry = {"ok": True, "value": {"png": _ok(True), "jpeg": {"ok": False,
                                                            "error": "RuntimeError: no JPEG"}}}
    strict = {c.name: c.status for c in _check_codecs(VerifyRequest(codecs=("jpeg", "png")),
                                                      entry)}
    assert strict == {"torchvision jpeg": "FAILED", "torchvision png": "ok"}
    lenient = {c.name: c.status for c in _check_codecs(VerifyRequest(codecs=("png",)), entry)}
    assert lenient["torchvision jpeg"] == "info"


def test_gpu_smoke_reports_solve_and_nvjpeg() -> None:
    p = {"torch": {"devices": [[9, 0, "NVIDIA H200"]]},
         "smoke": {"ok": True, "value": {"linalg solve": _ok(True),
                                         "nvjpeg decode": {"ok": False, "error": "no nvjpeg"}}}}
    got = {c.name: c.status for c in _check_smoke(VerifyRequest(codecs=("nvjpeg",)), p)}
    assert got == {"gpu linalg solve": "ok", "gpu nvjpeg decode": "FAILED"}
    got = {c.name: c.status for c in _check_smoke(VerifyRequest(), p)}
    assert got["gpu nvjpeg decode"] == "info"


def test_request_takes_the_codecs_from_the_vision_step() -> None:
    plan = {"plan": {"cuda": "12.8", "archs": ["8.6"], "torch_version": "2.9.1",
                     "components": [{"dist": "torch"}, {"dist": "torchvision"}],
                     "steps": [{"id": "build-torch", "env": {"USE_MAGMA": "1"}},
                               {"id": "build-vision", "env": {"TORCHVISION_USE_PNG": "0"}}]}}
    req = request_from_manifest(plan, ["nvjpeg"], "x86_64")
    assert req.codecs == ("jpeg",)
    assert "magma" in req.features
