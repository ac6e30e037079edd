"""Verify built wheels the way a user will meet them (pain.md FM-07/12/13-15/18/29, §3 item 9).

The wheels go into a throwaway venv (``--no-deps``, no index; the base env's site-packages are
appended with a ``.pth`` file so torch's own dependencies resolve without a download), and a probe
script runs there in isolated mode from an empty directory -- never from a source tree, whose
``torch/`` folder would shadow the wheel. The probe prints one JSON document; the checks below read
it, cuobjdump reads the binaries, and every failed invariant has its own error class and exit code.

Also ``python -m torchbuild verify DIST_DIR | WHEEL | PYTHON [--compare OTHER_PYTHON]``.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import re
import shlex
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from torchbuild.cc import Arch, parse_cc
from torchbuild.command import capture
from torchbuild.errors import (  # the verify codes 20-29 live with every other code
    ArchListError,
    CommandFailed,
    CompanionError,
    CudaMismatchError,
    DependencyCheckError,
    FeatureMissingError,
    GpuSmokeError,
    KernelImageError,
    TorchImportError,
    VerificationError,
    VersionMismatchError,
    WheelInstallError,
)
from torchbuild.logger import log
from torchbuild.options import Options
from torchbuild.plan import Plan
from torchbuild.proof.cmake_audit import RequestedFeatures
from torchbuild.proof.cubin import ArchCoverage, DeviceCode, coverage, find_cuobjdump, scan

COMPANIONS = ("torchvision", "torchaudio", "torchtext")
FEATURES = ("cudnn", "magma", "mkl", "cusparselt", "cudss", "cufile")
# What `verify --cuda X` requires when no --require says otherwise: the math libraries are
# reported, and enforced where the build's own torch step turned them on (USE_CUSPARSELT=1 ...).
DEFAULT_CUDA_FEATURES = ("cudnn", "magma", "mkl")
_MARK = "TORCHBUILD-PROBE:"


# Runs inside the throwaway env. Standard library + torch only; never raises; prints one JSON line.
PROBE = Path(__file__).resolve().parents[1] / "resources" / "verify_probe.py"


@dataclass(frozen=True)
class ExtraExpectation:
    """What one ``--extra`` wheel must deliver (from its plan component)."""

    dist: str
    archs: tuple[Arch, ...] = ()   # SASS (PTX) its .so files must carry: the archs it compiles
    imports: tuple[str, ...] = ()  # empty: the wheel's top-level packages
    smoke: str = ""

    def to_probe(self) -> dict[str, Any]:
        return {"dist": self.dist, "imports": list(self.imports), "smoke": self.smoke}


@dataclass(frozen=True)
class VerifyRequest:
    """What the wheels must be. ``None``/empty fields are reported but not enforced."""

    torch_version: str | None = None  # the tag's public version, e.g. "2.9.1"
    cuda: str | None = None  # "12.8"
    cpu: bool = False
    archs: tuple[Arch, ...] = ()
    features: tuple[str, ...] = ()  # subset of FEATURES that must be on
    companions: tuple[str, ...] = ()  # companions that must import (others are checked if present)
    gpu_smoke: bool = True
    # torchvision codecs that must decode/encode (jpeg, png; nvjpeg on a GPU): those the vision
    # step did not turn off (TORCHVISION_USE_X=0, --allow-missing X).
    codecs: tuple[str, ...] = ()
    extras: tuple[ExtraExpectation, ...] = ()  # --extra wheels: their own archs, imports, smoke

    @property
    def wants_cuda(self) -> bool:
        return not self.cpu and (self.cuda is not None or bool(self.archs))


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "FAILED" | "skipped" | "info"
    expected: str
    found: str
    error: type[VerificationError] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "expected": self.expected,
                "found": self.found,
                "exit_code": self.error.exit_code if self.error and self.failed else None}

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"


@dataclass
class VerifyReport:
    checks: list[Check]
    probe: dict[str, Any]
    device_code: list[DeviceCode] = field(default_factory=list)
    arch_coverage: list[ArchCoverage] = field(default_factory=list)
    env_dir: Path | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def rows(self) -> list[list[str]]:
        return [[c.name, c.status, c.expected, _short(c.found)] for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks],
                "device_code": [d.to_json() for d in self.device_code],
                "arch_coverage": [a.to_json() for a in self.arch_coverage],
                "env": str(self.env_dir) if self.env_dir else None, "probe": self.probe}

    def raise_for_failures(self) -> None:
        """Raise the first failed invariant's error; the message lists them all."""
        if self.ok:
            return
        first = self.failures[0]
        lines = [f"{c.name}: expected {c.expected}, found {c.found}" for c in self.failures]
        msg = f"{len(lines)} invariant(s) failed:\n  " + "\n  ".join(lines)
        err = (first.error or VerificationError)(msg, fix=_FIX.get(first.name, _FIX["default"]))
        err.report = self  # type: ignore[attr-defined]
        raise err


_FIX = {
    "cuda": "configure with the CUDA toolkit visible (CUDA_HOME, nvcc on PATH); see the audit",
    "arch list": "rebuild from a clean build dir with TORCH_CUDA_ARCH_LIST set from --cc",
    "kernels": "rebuild the library that lacks them with the same --cc (companions too)",
    "version": "build companions against the torch wheel built in the same run",
    "pip check": "install the missing requirements into the base env, or build the companion",
    "default": "read the report above; `python -m torchbuild verify --json` shows every value",
}


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ----------------------------------------------------------------------------- environment


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The probe's environment: no PYTHONPATH or LD_LIBRARY_PATH, so the wheels' RPATHs must work
    (PyTorch's own check_binary.sh unsets LD_LIBRARY_PATH for the same reason)."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES",
            "NVIDIA_DRIVER_CAPABILITIES")
    env = {k: environ[k] for k in keep if k in environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _site_dirs(python: Path, env: Mapping[str, str]) -> list[str]:
    code = ("import json, sys; print(json.dumps([p for p in sys.path "
            "if p.endswith(('site-packages', 'dist-packages'))]))")
    try:
        return list(json.loads(capture([str(python), "-I", "-c", code], env=env)))
    except CommandFailed as exc:
        msg = f"{python} does not run: {'; '.join(exc.digest) or exc.message}"
        raise WheelInstallError(msg, fix=f"check that `{python} -I -c pass` works (a broken "
                                "base env: re-create it, or pass another one)") from None


def make_throwaway_env(base_python: Path, wheels: Sequence[Path], env_dir: Path,
                       env: Mapping[str, str]) -> Path:
    """A fresh venv holding exactly ``wheels``; the base env's packages come after them.

    The venv gets no pip or setuptools of its own (they would shadow the base env's and fail
    ``pip check``); the base env's pip drives it with ``--python``. The ``.pth`` is written only
    after the install, else pip would see the base env's torch and skip ours.
    """
    shutil.rmtree(env_dir, ignore_errors=True)
    python = env_dir / "bin" / "python"
    try:
        capture([str(base_python), "-m", "venv", "--without-pip", str(env_dir)], env=env,
                timeout=300)
        # A pip constraint that caps torch/torchvision (CI images, this project's machines)
        # would refuse the very wheels under test, as in the build steps (plan._PIP_OWN_WHEELS).
        capture([*_pip(base_python, python), "install", "--no-deps", "--no-index",
                 *map(str, wheels)], env={**env, "PIP_CONSTRAINT": "/dev/null"}, timeout=1800)
    except CommandFailed as exc:
        msg = f"could not install {len(wheels)} wheel(s) into {env_dir}: " + "; ".join(exc.digest)
        fix = "check the wheels match this python and platform (and pip >= 22.3 in the base env)"
        raise WheelInstallError(msg, fix=fix) from None
    site = Path(_site_dirs(python, env)[0])
    (site / "_torchbuild_base.pth").write_text("\n".join(_site_dirs(base_python, env)) + "\n")
    return python


# `pip check` lines (pip 23-26, src/pip/_internal/commands/check.py): what is missing, and what is
# installed in a version the requirement excludes.
_PIP_MISSING = re.compile(r"^(?P<project>\S+) \S+ requires (?P<name>[^,\s]+), which is not "
                          r"installed\.?$")
_PIP_CONFLICT = re.compile(r"^(?P<project>\S+) \S+ has requirement (?P<req>.+), but you have "
                           r"(?P<name>\S+) \S+\.?$")


@dataclass(frozen=True)
class Broken:
    """One requirement ``pip check`` reports as unmet."""

    project: str       # canonical name of the distribution that has the requirement
    requirement: str   # the requirement without its marker, e.g. "pillow>=5.3.0,!=8.3.*"
    name: str          # canonical name of the required distribution
    line: str


def wheel_requirements(wheel: Path) -> dict[str, str]:
    """{canonical name: requirement without marker} of a wheel's Requires-Dist."""
    out: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        text = zf.read(meta).decode("utf-8", errors="replace") if meta else ""
    for value in email.parser.HeaderParser().parsestr(text).get_all("Requires-Dist") or []:
        try:
            req = Requirement(value)
        except InvalidRequirement:
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        out.setdefault(str(canonicalize_name(req.name)), f"{req.name}{extras}{req.specifier}")
    return out


def parse_pip_check(text: str, requires: Mapping[str, Mapping[str, str]]) -> list[Broken]:
    """The unmet requirements in ``pip check`` output; ``requires`` ({dist: wheel_requirements})
    supplies the full requirement where pip prints only the missing name."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if m := _PIP_MISSING.match(line):
            project, name = canonicalize_name(m["project"]), canonicalize_name(m["name"])
            req = requires.get(project, {}).get(name, m["name"])
            out.append(Broken(project, req, name, line))
        elif m := _PIP_CONFLICT.match(line):
            project = canonicalize_name(m["project"])
            out.append(Broken(project, m["req"], canonicalize_name(m["name"]), line))
    return out


def _pip_check_text(python: Path, env: Mapping[str, str], pip_python: Path | None
                    ) -> tuple[bool, str]:
    """(clean, output) of ``pip check``; pip exits 1 when something is broken."""
    argv = _pip(pip_python, python) if pip_python else [str(python), "-m", "pip"]
    try:
        return True, capture([*argv, "check"], env=env, timeout=300)
    except CommandFailed as exc:
        return False, "\n".join(exc.digest)


def install_runtime_requirements(python: Path, base_python: Path, wheels: Sequence[Path],
                                 env: Mapping[str, str], *, offline: bool = False,
                                 wheelhouse: Path | None = None) -> Check:
    """Install what the wheels need at run time and neither the throwaway env nor the base env
    has (a fresh torch venv has no numpy or pillow, and torchvision does not import without
    them). torch and the wheels built here are never taken from an index."""
    requires = {str(canonicalize_name(dist_name(w))): wheel_requirements(w) for w in wheels}
    ours = set(requires) | {"torch"}
    clean, text = _pip_check_text(python, env, base_python)
    needed: list[str] = []
    if not clean:
        for b in parse_pip_check(text, requires):
            if b.project in requires and b.name not in ours and b.requirement not in needed:
                needed.append(b.requirement)
    if not needed:
        return Check("runtime deps", "ok", "installed", "all present in the build env")
    local = wheelhouse is not None and wheelhouse.is_dir()
    if offline:
        where = f"the pip cache {wheelhouse} (--offline)"
        source = ["--no-index", "--find-links", str(wheelhouse)] if local else ["--no-index"]
    else:
        where = "the package index" + (f" and {wheelhouse}" if local else "")
        source = ["--find-links", str(wheelhouse)] if local else []
    log.info(f"installing the wheels' runtime requirements {' '.join(needed)} into the "
             f"throwaway env from {where}")
    try:
        capture([*_pip(base_python, python), "install", *source, *needed], env=env,
                timeout=1800)
    except CommandFailed as exc:
        names = ", ".join(needed)
        msg = (f"the wheels need {names} at run time; neither the build env nor {where} has "
               f"them: " + "; ".join(exc.digest[-3:]))
        fix = (f"install them into the build env ({base_python} -m pip install "
               f"{' '.join(shlex.quote(n) for n in needed)})"
               + (", or run `torchbuild fetch` with the same options on a connected machine"
                  if offline else "") + ", then re-run")
        raise WheelInstallError(msg, fix=fix) from None
    return Check("runtime deps", "ok", "installed", f"{' '.join(needed)} from {where}")


def _pip(base_python: Path, target: Path) -> list[str]:
    return [str(base_python), "-m", "pip", "--python", str(target), "--disable-pip-version-check"]


def run_probe(python: Path, dists: Sequence[str], *, companions: Sequence[str], smoke: bool,
              work_dir: Path, env: Mapping[str, str],
              extras: Sequence[ExtraExpectation] = ()) -> dict[str, Any]:
    """Run the probe with ``python -I`` from an empty directory; return its JSON."""
    cwd = work_dir / "empty-cwd"
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    script = work_dir / "torchbuild_probe.py"
    shutil.copyfile(PROBE, script)   # run from the scratch dir, not from the installed package
    want = json.dumps({"dists": list(dists), "companions": list(companions), "smoke": smoke,
                       "extras": [e.to_probe() for e in extras]})
    try:
        out = capture([str(python), "-I", str(script), want], env=env, cwd=cwd, timeout=900)
    except CommandFailed as exc:
        msg = f"the probe crashed in {python} (exit {exc.returncode}): " + "; ".join(exc.digest)
        raise TorchImportError(msg, fix="run `python -c 'import torch'` there to see it") from None
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith(_MARK)), None)
    if line is None:
        msg = f"the probe printed no report: {out[-500:]}"
        raise TorchImportError(msg, fix="run the probe by hand: " + str(script))
    return dict(json.loads(line[len(_MARK):]))


# ----------------------------------------------------------------------------- checks

Probe = Mapping[str, Any]


def _value(entry: Any) -> Any:
    return entry.get("value") if isinstance(entry, Mapping) and entry.get("ok") else None


def _check_import(probe: Probe, site: str | None) -> list[Check]:
    torch = probe.get("torch", {})
    if "import_error" in torch:
        return [Check("import torch", "FAILED", "imports", torch["import_error"], TorchImportError)]
    where = str(torch.get("file", ""))
    if site is not None and not where.startswith(site):
        return [Check("import torch", "FAILED", f"from {site}", where, TorchImportError)]
    return [Check("import torch", "ok", "imports from the env" if site else "imports", where)]


def _check_version(req: VerifyRequest, probe: Probe) -> list[Check]:
    found = str(probe["torch"]["version"])
    if req.torch_version is None:
        return [Check("version", "info", "-", found)]
    try:
        ok = Version(found).public == Version(req.torch_version).public
    except InvalidVersion:
        ok = False
    return [Check("version", "ok" if ok else "FAILED", req.torch_version, found,
                  VersionMismatchError)]


def _check_cuda(req: VerifyRequest, probe: Probe) -> list[Check]:
    found = probe["torch"].get("cuda")
    shown = found or "none (CPU build)"
    if req.cpu:
        return [Check("cuda", "ok" if found is None else "info", "none", shown)]
    if not req.wants_cuda:
        return [Check("cuda", "info", "-", shown)]
    expected = req.cuda or "a CUDA build"
    if found is None:
        wanted = " ".join(str(a) for a in req.archs)
        return [Check("cuda", "FAILED", f"{expected} for {wanted}".strip(), shown,
                      CudaMismatchError)]
    ok = req.cuda is None or _major_minor(found) == _major_minor(req.cuda)
    return [Check("cuda", "ok" if ok else "FAILED", expected, found, CudaMismatchError)]


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_arch_list(req: VerifyRequest, probe: Probe) -> list[Check]:
    flags = _value(probe["torch"].get("arch_flags")) or []
    if not req.wants_cuda or not req.archs:
        return [Check("arch list", "info", "-", " ".join(flags) or "none")]
    missing = [a.sm for a in req.archs if a.sm not in flags]
    missing += [a.compute for a in req.archs if a.ptx and a.compute not in flags]
    expected = " ".join(str(a) for a in req.archs)
    found = " ".join(flags) or "none"
    if missing:
        found += f" (missing {' '.join(missing)})"
    return [Check("arch list", "FAILED" if missing else "ok", expected, found, ArchListError)]


def _settings(probe: Probe) -> dict[str, str]:
    return dict(_value(probe["torch"].get("settings")) or {})


def _feature_found(name: str, probe: Probe) -> tuple[bool, str]:
    torch, conf = probe["torch"], _settings(probe)
    if name == "cudnn":
        version = _value(torch.get("cudnn"))
        return version is not None, f"cuDNN {version}" if version else "no cuDNN"
    if name == "magma":
        magma = _value(torch.get("magma")) is True
        return magma, "torch.cuda.has_magma=" + str(magma)
    if name in _LIBRARY_CHECKS:
        return _library_found(torch.get(name), _LIBRARY_CHECKS[name])
    mkl = _value(torch.get("mkl")) is True
    blas = conf.get("BLAS_INFO", "?")
    return mkl and blas.lower() == "mkl", f"mkl={mkl}, BLAS_INFO={blas}"


# How the probe (resources/verify_probe.py) sees each CUDA math library, for the report.
_LIBRARY_CHECKS = {
    "cusparselt": "torch.backends.cusparselt.is_available()",
    "cufile": "torch._C._gds_register_buffer compiled in",
    "cudss": "libcudss.so loaded with torch",
}


def _library_found(entry: Any, how: str) -> tuple[bool, str]:
    """A probe entry that is missing (an older tool's probe) or that raised is 'not found',
    with the reason: a torch older than the check (cusparselt < 2.1, gds < 2.5) lands here."""
    if not isinstance(entry, Mapping):
        return False, f"{how}: not probed"
    if not entry.get("ok"):
        return False, f"{how}: {entry.get('error', '?')}"
    found = entry.get("value") is True
    return found, f"{how}={found}"


def _is_cuda_torch(probe: Probe) -> bool:
    return bool(probe.get("torch", {}).get("cuda"))


def _check_features(req: VerifyRequest, probe: Probe) -> list[Check]:
    """MKL always; the CUDA features for a CUDA request, or as information for a CUDA torch
    verified without one (``verify PYTHON``). A CPU build has none of them: no rows."""
    checks = []
    for name in FEATURES:
        if name != "mkl" and not (req.wants_cuda or _is_cuda_torch(probe)):
            continue
        ok, found = _feature_found(name, probe)
        wanted = name in req.features
        status = "ok" if ok else ("FAILED" if wanted else "info")
        checks.append(Check(name, status, "on" if wanted else "-", found, FeatureMissingError))
    return checks


def _check_companions(req: VerifyRequest, probe: Probe) -> list[Check]:
    checks = []
    torch_version = str(probe["torch"]["version"])
    for name, entry in probe.get("companions", {}).items():
        if not entry.get("ok"):
            status = "FAILED" if name in req.companions else "info"
            checks.append(Check(name, status, "imports", entry.get("error", "?"), CompanionError))
            continue
        info = entry["value"]
        ops = info.get("ops")
        ops_ok = ops is None or (ops.get("ok") and ops.get("value") is True)
        found = f"{info.get('version')}, native ops " + ("load" if ops_ok else
                                                           f"fail: {ops.get('error', ops)}")
        checks.append(Check(name, "ok" if ops_ok else "FAILED", "imports, ops load", found,
                            CompanionError))
        checks += _check_pin(name, info.get("requires", []), torch_version)
        if name == "torchvision":
            checks += _check_codecs(req, info.get("codecs"))
    return checks


def _check_codecs(req: VerifyRequest, entry: Mapping[str, Any] | None) -> list[Check]:
    """torchvision decodes a PNG and a JPEG the probe wrote, and encodes them back."""
    if entry is None:
        return []
    if not entry.get("ok"):
        return [Check("torchvision codecs", "FAILED" if req.codecs else "info", "run",
                      str(entry.get("error", "?")), CompanionError)]
    checks = []
    for codec, res in sorted(entry["value"].items()):
        ok = bool(res.get("ok") and res.get("value") is True)
        wanted = codec in req.codecs
        found = "decode + encode round trip" if ok else str(res.get("error", "wrong pixels"))
        checks.append(Check(f"torchvision {codec}", "ok" if ok else ("FAILED" if wanted else
                                                                     "info"),
                            "decodes, encodes" if wanted else "-", found, CompanionError))
    return checks


def _check_pin(name: str, requires: Sequence[str], torch_version: str) -> list[Check]:
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "torch" or not req.specifier:
            continue
        ok = req.specifier.contains(torch_version, prereleases=True)
        return [Check(f"{name} pin", "ok" if ok else "FAILED", str(req), torch_version,
                      VersionMismatchError)]
    return []


def _check_smoke(req: VerifyRequest, probe: Probe) -> list[Check]:
    devices = probe["torch"].get("devices") or []
    if not req.gpu_smoke or "smoke" not in probe:
        reason = "no GPU visible" if not devices else "not requested"
        return [Check("gpu smoke", "skipped", "-", reason)]
    smoke = probe["smoke"]
    if not smoke.get("ok"):
        return [Check("gpu smoke", "FAILED", "runs", smoke.get("error", "?"), GpuSmokeError)]
    checks = []
    for name, res in smoke["value"].items():
        ok = res.get("ok") and res.get("value") is True
        found = "matches CPU" if ok else str(res.get("error", "wrong result"))
        # nvjpeg is enforced only where the vision step built it (--allow-missing nvjpeg).
        wanted = name != "nvjpeg decode" or "nvjpeg" in req.codecs
        checks.append(Check(f"gpu {name}", "ok" if ok else ("FAILED" if wanted else "info"),
                            "runs on " + str(devices[0][-1]), found, GpuSmokeError))
    return checks


def _check_extras(req: VerifyRequest, probe: Probe) -> list[Check]:
    """Each --extra: imports with this torch, pins it, and its smoke op matches the reference."""
    checks: list[Check] = []
    torch_version = str(probe["torch"]["version"])
    for want in req.extras:
        entry = probe.get("extras", {}).get(want.dist, {})
        if not entry.get("ok"):
            checks.append(Check(f"{want.dist} import", "FAILED", "imports",
                                entry.get("error", "not probed"), CompanionError))
            continue
        info = entry["value"]
        for module, res in info["imports"].items():
            ok = bool(res.get("ok"))
            checks.append(Check(f"{want.dist} import {module}", "ok" if ok else "FAILED",
                                "imports after torch", info["version"] if ok else
                                res.get("error", "?"), CompanionError))
        checks += _check_pin(want.dist, info.get("requires", []), torch_version)
        checks += _extra_smoke(want, info)
    return checks


def _extra_smoke(want: ExtraExpectation, info: Mapping[str, Any]) -> list[Check]:
    if not want.smoke:
        return []
    if "smoke" not in info:
        return [Check(f"{want.dist} smoke", "skipped", "-", "no GPU visible")]
    res = info["smoke"]
    if not res.get("ok"):
        return [Check(f"{want.dist} smoke", "FAILED", "matches the reference",
                      res.get("error", "?"), GpuSmokeError)]
    return [Check(f"{want.dist} smoke {dev}", "ok" if good else "FAILED",
                  "matches the reference", "matches" if good else "wrong result", GpuSmokeError)
            for dev, good in res["value"].items()]


_PROBE_CHECKS: tuple[Callable[[VerifyRequest, Probe], list[Check]], ...] = (
    _check_version, _check_cuda, _check_arch_list, _check_features, _check_companions,
    _check_smoke, _check_extras,
)


def check_probe(req: VerifyRequest, probe: Probe, *, site: str | None) -> list[Check]:
    """Every invariant the probe's JSON can answer, in report order."""
    checks = _check_import(probe, site)
    if checks[0].failed:
        return checks
    for fn in _PROBE_CHECKS:
        checks += fn(req, probe)
    return checks


def check_kernels(req: VerifyRequest, probe: Probe, environ: Mapping[str, str]
                  ) -> tuple[list[Check], list[DeviceCode], list[ArchCoverage]]:
    """cuobjdump over every shared library of the verified distributions."""
    own = {canonicalize_name(e.dist) for e in req.extras}
    files = [Path(p) for dist, entry in probe.get("binaries", {}).items()
             if canonicalize_name(dist) not in own for p in _value(entry) or []]
    if not files and own:
        return [], [], []   # only extras were verified: their own checks cover the kernels
    if not req.wants_cuda or not req.archs:
        return [Check("kernels", "skipped", "-", "no CUDA archs requested")], [], []
    codes = scan(files, find_cuobjdump(environ))
    cov = coverage(codes, req.archs)
    checks = []
    if not codes:
        checks.append(Check("kernels", "FAILED", "device code", f"none in {len(files)} "
                            "libraries", KernelImageError))
    for c in cov:
        found = ("SASS" if c.sass else "no SASS") + {None: "", True: " + PTX",
                                                      False: ", no PTX"}[c.ptx]
        if c.lacking:
            found += f" (lacking: {', '.join(c.lacking[:4])})"
        checks.append(Check(f"kernels {c.arch}", "ok" if c.ok else "FAILED",
                            "SASS" + (" + PTX" if c.ptx is not None else ""), found,
                            KernelImageError))
    return checks, codes, cov


def pip_check(python: Path, env: Mapping[str, str], *, pip_python: Path | None = None,
              ours: Sequence[str] | None = None) -> Check:
    """``pip check`` of ``python``'s environment, run by ``pip_python``'s pip when given.

    With ``ours`` (the distributions under test) only their broken requirements fail the check:
    a base env whose own packages disagree (a user's torch beside an older setuptools) is
    reported, but it is not what these wheels did.
    """
    argv = _pip(pip_python, python) if pip_python else [str(python), "-m", "pip"]
    try:
        out = capture([*argv, "check"], env=env, timeout=300)
    except CommandFailed as exc:
        if any("No module named pip" in d for d in exc.digest):
            return Check("pip check", "skipped", "-", "no pip in this interpreter")
        if ours is not None:
            mine = {canonicalize_name(d) for d in ours}
            broken = parse_pip_check("\n".join(exc.digest), {})
            if broken and not any(b.project in mine for b in broken):
                return Check("pip check", "info", "no broken requirements of these wheels",
                             "base env only: " + "; ".join(b.line for b in broken))
        return Check("pip check", "FAILED", "no broken requirements", "; ".join(exc.digest),
                     DependencyCheckError)
    return Check("pip check", "ok", "no broken requirements", out.splitlines()[-1] if out else "")


# ----------------------------------------------------------------------------- entry points


def dist_name(wheel: Path) -> str:
    name, _, _, _ = parse_wheel_filename(wheel.name)
    return str(name)


def verify_wheels(wheels: Sequence[Path], request: VerifyRequest, *, base_python: Path,
                  work_dir: Path, environ: Mapping[str, str] | None = None,
                  offline: bool = False, wheelhouse: Path | None = None) -> VerifyReport:
    """Install ``wheels`` into a throwaway venv and check every invariant. Does not raise on a
    failed invariant (call ``report.raise_for_failures()``); raises when it cannot check at all."""
    environ = environ or {}
    env = clean_env(environ)
    env_dir = work_dir / "verify-env"
    python = make_throwaway_env(base_python, wheels, env_dir, env)
    deps = install_runtime_requirements(python, base_python, wheels, env, offline=offline,
                                        wheelhouse=wheelhouse)
    dists = [dist_name(w) for w in wheels]
    companions = sorted(set(COMPANIONS) & {canonicalize_name(d) for d in dists}
                        | set(request.companions))
    probe = run_probe(python, dists, companions=companions, smoke=request.gpu_smoke,
                      work_dir=work_dir, env=env, extras=request.extras)
    site = str(env_dir.resolve()) if "torch" in {canonicalize_name(d) for d in dists} else None
    report = _assemble(request, probe, site, environ)
    report.checks += [deps, pip_check(python, env, pip_python=base_python, ours=dists)]
    report.env_dir = env_dir
    return report


def verify_installed(python: Path, request: VerifyRequest, *, work_dir: Path,
                     environ: Mapping[str, str] | None = None) -> VerifyReport:
    """The same checks against an interpreter's installed torch (and companions)."""
    environ = environ or {}
    env = clean_env(environ)
    work_dir.mkdir(parents=True, exist_ok=True)
    companions = sorted(set(COMPANIONS) | set(request.companions))
    probe = run_probe(python, ["torch", *companions], companions=companions,
                      smoke=request.gpu_smoke, work_dir=work_dir, env=env)
    present = [n for n in companions if probe.get("companions", {}).get(n, {}).get("ok")
               or n in request.companions]
    probe["companions"] = {n: probe["companions"][n] for n in present}
    report = _assemble(request, probe, None, environ)
    report.checks.append(pip_check(python, env))
    return report


def extra_kernels(req: VerifyRequest, probe: Probe, environ: Mapping[str, str]
                  ) -> tuple[list[Check], list[DeviceCode], list[ArchCoverage]]:
    """cuobjdump over each extra's own libraries, against the archs that extra compiles."""
    checks: list[Check] = []
    all_codes: list[DeviceCode] = []
    all_cov: list[ArchCoverage] = []
    for want in req.extras:
        if not want.archs:
            continue
        files = [Path(p) for p in _value(probe.get("binaries", {}).get(want.dist)) or []]
        codes = scan(files, find_cuobjdump(environ))
        cov = coverage(codes, want.archs)
        if not codes:
            checks.append(Check(f"{want.dist} kernels", "FAILED", "device code",
                                f"none in {len(files)} libraries", KernelImageError))
        for c in cov:
            found = "SASS" if c.sass else f"no SASS ({', '.join(c.lacking[:3])})"
            checks.append(Check(f"{want.dist} kernels {c.arch}", "ok" if c.ok else "FAILED",
                                "SASS", found, KernelImageError))
        all_codes += codes
        all_cov += cov
    return checks, all_codes, all_cov


def _assemble(request: VerifyRequest, probe: dict[str, Any], site: str | None,
              environ: Mapping[str, str]) -> VerifyReport:
    checks = check_probe(request, probe, site=site)
    if checks[0].failed:
        return VerifyReport(checks, probe)
    kernel_checks, codes, cov = check_kernels(request, probe, environ)
    extra_checks, extra_codes, extra_cov = extra_kernels(request, probe, environ)
    return VerifyReport(checks + kernel_checks + extra_checks, probe, codes + extra_codes,
                        cov + extra_cov)


def request_for_plan(plan: Plan, allow_missing: Sequence[str] | None = None,
                     machine: str | None = None) -> VerifyRequest:
    """What a planned build must deliver: its tag, CUDA, archs and (from the torch step's env)
    the features it did not switch off itself. Read from the typed plan (its ``allow_missing``
    and ``machine`` unless given)."""
    torch_env = next((s.env for s in plan.steps if s.id == "build-torch"), {})
    vision_env = next((s.env for s in plan.steps if s.id == "build-vision"), {})
    allowed = plan.allow_missing if allow_missing is None else allow_missing
    request = _request(plan.torch_version, plan.cuda, plan.archs if plan.cuda else (),
                       torch_env, [c.dist for c in plan.components if c.kind == "core"], allowed,
                       plan.machine if machine is None else machine,
                       [_expectation(c.dist, c.expected_archs, c.imports, c.smoke)
                        for c in plan.components if c.kind == "extra"])
    return _with_codecs(request, vision_env, allowed)


def verify_key(plan: Plan, wheels: Sequence[Path], lock_sha256: str | None,
               env_packages: Mapping[str, str]) -> str:
    """What a verify report depends on: the wheels (name, size, mtime: hashing a 1 GB torch
    wheel would cost seconds), the plan's request and build env, and the base env's packages
    (minus this build's own wheels, which the install steps put there)."""
    own = {str(canonicalize_name(c.dist)) for c in plan.components} | {"torch"}
    data = {"tool": plan.tool_version,
            "wheels": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in wheels],
            "request": repr(request_for_plan(plan)), "python": str(plan.environment.python),
            "lock": lock_sha256 or "", "offline": plan.offline,
            "packages": sorted((k, v) for k, v in env_packages.items() if k not in own)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _report_path(plan: Plan) -> Path:
    return plan.work_dir / "verify" / "verify-report.json"


def previous_report(plan: Plan, key: str) -> dict[str, Any] | None:
    """The report of an earlier passing verify of exactly these wheels in this env, if any."""
    try:
        stored = json.loads((plan.work_dir / "verify" / "verify-key.json").read_text())
        report = json.loads(_report_path(plan).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(report, dict):
        return None
    return report if report.get("ok") else None


def verify_for_plan(plan: Plan, options: Options, wheels: Sequence[Path],
                    key: str | None = None) -> dict[str, Any]:
    """The pipeline's verify stage: check, print the table, keep the JSON, raise on a failure.

    With ``key`` (verify_key), a passing report of the same wheels in the same env is reused:
    a no-op rerun must not spend seconds re-creating the throwaway env (#17)."""
    previous = previous_report(plan, key) if key else None
    if previous is not None:
        log.info(f"verify: the wheels and the env are unchanged; keeping the report in "
                 f"{_report_path(plan)}")
        return previous
    request = request_for_plan(plan)
    # An --extra from git or a directory is named after its repo; its wheel says the real dist.
    by_name = {c.name: dist_name(w) for c, w in zip(plan.components, wheels, strict=False)}
    request = replace(request, extras=tuple(replace(e, dist=by_name.get(e.dist, e.dist))
                                            for e in request.extras))
    work_dir = plan.work_dir / "verify"
    log.step(f"verify ({len(wheels)} wheels in a throwaway env)")
    report = verify_wheels(wheels, request, base_python=Path(plan.environment.python),
                           work_dir=work_dir, environ=options.environ, offline=plan.offline,
                           wheelhouse=plan.cache_dir / "pip")
    log.table(report.rows(), ["check", "status", "expected", "found"])
    (work_dir / "verify-key.json").unlink(missing_ok=True)
    _report_path(plan).write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    log.info(f"{summary_line(report)}; report: {_report_path(plan)}")
    report.raise_for_failures()
    if key:
        (work_dir / "verify-key.json").write_text(json.dumps({"key": key}) + "\n")
    log.step_end(ok=True)
    return report.to_json()


# ----------------------------------------------------------------------------- compare


COMPARE_KEYS: tuple[tuple[str, Callable[[Probe], str]], ...] = (
    ("torch", lambda p: str(p["torch"].get("version"))),
    ("CUDA", lambda p: str(p["torch"].get("cuda"))),
    ("cuDNN", lambda p: str(_value(p["torch"].get("cudnn")))),
    ("archs", lambda p: " ".join(_value(p["torch"].get("arch_flags")) or []) or "none"),
    ("BLAS", lambda p: _settings(p).get("BLAS_INFO", "?")),
    ("LAPACK", lambda p: _settings(p).get("LAPACK_INFO", "?")),
    ("MKL", lambda p: str(_value(p["torch"].get("mkl")))),
    ("MKL-DNN", lambda p: str(_value(p["torch"].get("mkldnn")))),
    ("MAGMA", lambda p: str(_value(p["torch"].get("magma")))),
    ("cuSPARSELt", lambda p: str(_value(p["torch"].get("cusparselt")))),
    ("cuDSS", lambda p: str(_value(p["torch"].get("cudss")))),
    ("cuFile", lambda p: str(_value(p["torch"].get("cufile")))),
    ("C++11 ABI", lambda p: str(_value(p["torch"].get("cxx11_abi")))),
)


def compare_rows(this: Probe, other: Probe) -> list[list[str]]:
    """Side by side: the headline facts, then every build setting; ``*`` marks a difference."""
    if "import_error" in this.get("torch", {}) or "import_error" in other.get("torch", {}):
        msg = "cannot compare: torch does not import on one side"
        raise TorchImportError(msg, fix="verify each interpreter alone first")
    rows = [[key, fn(this), fn(other)] for key, fn in COMPARE_KEYS]
    a, b = _settings(this), _settings(other)
    rows += [[key, a.get(key, "-"), b.get(key, "-")] for key in sorted(set(a) | set(b))]
    return [[("* " if x != y else "  ") + k, _short(x, 45), _short(y, 45)] for k, x, y in rows]


def request_from_manifest(manifest: Mapping[str, Any], allow_missing: Sequence[str],
                          machine: str) -> VerifyRequest:
    """A build's own request, read back from the ``plan`` in its torchbuild-manifest.json."""
    plan = manifest.get("plan") or {}
    cuda = plan.get("cuda")
    archs = parse_cc(" ".join(plan.get("archs") or [])) if cuda and plan.get("archs") else ()
    steps = {s.get("id"): s for s in plan.get("steps", [])}
    env = steps.get("build-torch", {}).get("env") or {}
    comps = plan.get("components", [])
    request = _request(plan.get("torch_version"), cuda, archs, env,
                       [str(c.get("dist")) for c in comps if c.get("kind", "core") == "core"],
                       allow_missing, machine, _extras_of(comps))
    return _with_codecs(request, steps.get("build-vision", {}).get("env") or {}, allow_missing)


def _expectation(dist: str, archs: Sequence[str], imports: Sequence[str],
                 smoke: str) -> ExtraExpectation:
    return ExtraExpectation(dist, parse_cc(" ".join(archs)) if archs else (), tuple(imports),
                            smoke)


def _extras_of(components: Sequence[Mapping[str, Any]]) -> list[ExtraExpectation]:
    """--extra components of a plan (as JSON): what each must deliver."""
    return [_expectation(str(c["dist"]), c.get("expected_archs") or (), c.get("imports") or (),
                         str(c.get("smoke") or "")) for c in components
            if c.get("kind") == "extra"]


def _with_codecs(request: VerifyRequest, vision_env: Mapping[str, str],
                 allow_missing: Sequence[str]) -> VerifyRequest:
    """The codecs torchvision must decode with: those its build step did not switch off."""
    if "torchvision" not in request.companions:
        return request
    codecs = ["jpeg", "png"] + (["nvjpeg"] if request.wants_cuda else [])
    allowed = {a.lower() for a in allow_missing}
    return replace(request, codecs=tuple(
        c for c in codecs if c not in allowed
        and vision_env.get(f"TORCHVISION_USE_{c.upper()}", "1") != "0"))


def _request(torch_version: str | None, cuda: str | None, archs: tuple[Arch, ...],
             torch_env: Mapping[str, str], dists: Sequence[str], allow_missing: Sequence[str],
             machine: str, extras: Sequence[ExtraExpectation] = ()) -> VerifyRequest:
    wanted = RequestedFeatures.from_step_env(torch_env, cpu=cuda is None, archs=archs,
                                             machine=machine)
    features = {"cudnn": wanted.cudnn, "magma": wanted.magma, "mkl": wanted.mkl,
                "cusparselt": wanted.cusparselt, "cudss": wanted.cudss, "cufile": wanted.cufile}
    allowed = {a.lower() for a in allow_missing}
    names = {canonicalize_name(d) for d in dists}
    return VerifyRequest(
        torch_version=torch_version if "torch" in names else None,
        cuda=cuda, cpu=cuda is None, archs=archs,
        features=tuple(sorted(n for n, on in features.items() if on and n not in allowed)),
        companions=tuple(sorted(names & set(COMPANIONS))),
        extras=tuple(extras),
    )


def summary_line(report: VerifyReport) -> str:
    passed = sum(c.status == "ok" for c in report.checks)
    return f"{passed} checks passed, {len(report.failures)} failed"
