"""verify's CUDA math-library checks (cuSPARSELt, cuDSS, cuFile): what the probe saw becomes
ok / FAILED / info exactly as the build asked for them. Pure: probe results as data."""

from __future__ import annotations

from typing import Any

from torchbuild.proof.verify import (
    VerifyRequest,
    _check_features,
    request_from_manifest,
)

LIBS = ("cusparselt", "cudss", "cufile")


def _probe(cuda: str | None, **libs: dict[str, Any]) -> dict[str, Any]:
    torch: dict[str, Any] = {"version": "2.9.1", "cuda": cuda, "mkl": {"ok": True, "value": True},
                             "settings": {"ok": True, "value": {"BLAS_INFO": "mkl"}},
                             "magma": {"ok": True, "value": True},
                             "cudnn": {"ok": True, "value": 91002}}
    torch.update(libs)
    return {"torch": torch}


def _yes() -> dict[str, Any]:
    return {"ok": True, "value": True}


def _no() -> dict[str, Any]:
    return {"ok": True, "value": False}


def _rows(req: VerifyRequest, probe: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.found) for c in _check_features(req, probe)}


def _manifest(torch_env: dict[str, str], cuda: str | None = "12.8") -> dict[str, Any]:
    return {"plan": {"cuda": cuda, "archs": ["8.6"] if cuda else [], "torch_version": "2.9.1",
                     "components": [{"dist": "torch"}],
                     "steps": [{"id": "build-torch", "env": torch_env}]}}


def test_a_build_that_turned_them_on_must_have_them() -> None:
    env = {"USE_CUSPARSELT": "1", "USE_CUDSS": "1", "USE_CUFILE": "1"}
    req = request_from_manifest(_manifest(env), [], "x86_64")
    assert set(LIBS) <= set(req.features)
    rows = _rows(req, _probe("12.8", cusparselt=_yes(), cudss=_no(),
                             cufile={"ok": False, "error": "RuntimeError: no torch.cuda.gds"}))
    assert rows["cusparselt"] == ("ok", "torch.backends.cusparselt.is_available()=True")
    assert rows["cudss"] == ("FAILED", "libcudss.so loaded with torch=False")
    assert rows["cufile"][0] == "FAILED" and "no torch.cuda.gds" in rows["cufile"][1]


def test_allow_missing_or_a_build_without_the_switch_only_reports() -> None:
    env = {"USE_CUSPARSELT": "1", "USE_CUDSS": "1"}    # USE_CUFILE not set: off by default
    req = request_from_manifest(_manifest(env), ["cudss"], "x86_64")
    assert "cusparselt" in req.features
    assert "cudss" not in req.features and "cufile" not in req.features
    rows = _rows(req, _probe("12.8", cusparselt=_yes(), cudss=_no(), cufile=_no()))
    assert rows["cudss"][0] == "info" and rows["cufile"][0] == "info"
    assert rows["cusparselt"][0] == "ok"


def test_a_cpu_build_has_no_cuda_library_rows() -> None:
    req = request_from_manifest(_manifest({"USE_CUSPARSELT": "1"}, cuda=None), [], "x86_64")
    assert not set(LIBS) & set(req.features)
    rows = _rows(req, _probe(None, cusparselt=_no(), cudss=_no(), cufile=_no()))
    assert set(rows) == {"mkl"}


def test_an_installed_cuda_torch_without_a_request_reports_them_as_info() -> None:
    # `verify PYTHON` on a CUDA torch (no --cuda): nothing is enforced, everything is shown.
    rows = _rows(VerifyRequest(features=("mkl",)),
                 _probe("13.0", cusparselt=_yes(), cudss=_yes(), cufile=_no()))
    assert {n: s for n, (s, _) in rows.items()} == {
        "mkl": "ok", "cudnn": "ok", "magma": "ok", "cusparselt": "ok", "cudss": "ok",
        "cufile": "info"}


def test_a_probe_from_before_these_checks_is_not_found_not_a_crash() -> None:
    req = VerifyRequest(cuda="12.8", features=("cudss",))
    rows = _rows(req, _probe("12.8"))
    assert rows["cudss"] == ("FAILED", "libcudss.so loaded with torch: not probed")
