"""``torchbuild verify TARGET``: check built wheels (or an installed torch) against a request.

The checks live in ``proof/verify.py``; this is the command line around them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from torchbuild.cc import parse_cc
from torchbuild.errors import UsageError
from torchbuild.logger import log
from torchbuild.options import HelpFormatter
from torchbuild.proof.verify import (
    DEFAULT_CUDA_FEATURES,
    FEATURES,
    VerifyReport,
    VerifyRequest,
    clean_env,
    compare_rows,
    request_from_manifest,
    run_probe,
    verify_installed,
    verify_wheels,
)

DESCRIPTION = """\
Check built wheels (or the torch an interpreter has installed) against what was asked for:
versions, CUDA, compiled archs, cuDNN/MKL/MAGMA, that the companions import and run, pip check.
Wheels are installed into a throwaway venv; nothing else is touched.

  torchbuild verify dist/
  torchbuild verify dist/ --compare /path/to/official-wheel-env/bin/python"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("verify", help="verify wheels (or an installed torch)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("target", help="a dist dir of wheels, a wheel, or a python interpreter")
    p.add_argument("--cc", help="archs that must be present, e.g. '8.6 9.0+PTX'")
    p.add_argument("--cuda", help="CUDA version torch must report, e.g. 12.8")
    p.add_argument("--cpu", action="store_true", help="expect a CPU-only build")
    p.add_argument("--torch", help="torch version the wheels must carry (the tag)")
    p.add_argument("--require", action="append", default=[], choices=FEATURES,
                   help="a feature that must be on (default for CUDA: cudnn, magma, mkl; "
                   "CPU: mkl on x86_64)")
    p.add_argument("--allow-missing", action="append", default=[],
                   help="accept a missing feature (cudnn, magma, mkl, cusparselt, cudss, "
                   "cufile)")
    p.add_argument("--python", help="base interpreter for the throwaway env (default: the build "
                   "env the dist's manifest records, else this one)")
    p.add_argument("--work-dir", default=".torchbuild-verify", help="scratch directory")
    p.add_argument("--compare", metavar="OTHER_PYTHON", help="show the build config beside "
                   "another interpreter's torch")
    p.add_argument("--no-gpu-smoke", action="store_true", help="skip the GPU smoke tests")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=main)


def _manifest_request(args: argparse.Namespace, target: Path) -> VerifyRequest | None:
    """With no expectation on the command line, a dist dir's manifest says what was asked for."""
    given = args.cc or args.cuda or args.cpu or args.torch or args.require
    manifest = target / "torchbuild-manifest.json"
    if given or not target.is_dir() or not manifest.is_file():
        return None
    request = request_from_manifest(json.loads(manifest.read_text()), args.allow_missing,
                                    platform.machine())
    return dataclasses.replace(request, gpu_smoke=not args.no_gpu_smoke)


def _manifest_python(target: Path) -> Path | None:
    """The build env the manifest records: the companions of a --torch-from-env build import
    only next to that env's torch ("No module named 'torch'" from any other interpreter, #17)."""
    manifest = (target if target.is_dir() else target.parent) / "torchbuild-manifest.json"
    try:
        python = json.loads(manifest.read_text())["environment"]["python"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(python, str) and Path(python).is_file()):
        return None
    log.info(f"base interpreter: {python} (the build env in {manifest.name}; --python to "
             "choose another)")
    return Path(python)


def request_from_args(args: argparse.Namespace) -> VerifyRequest:
    archs = parse_cc(args.cc) if args.cc else ()
    wants_cuda = not args.cpu and (bool(archs) or args.cuda is not None)
    features = set(args.require) or (set(DEFAULT_CUDA_FEATURES) if wants_cuda else {"mkl"})
    unknown = {a.lower() for a in args.allow_missing} - set(FEATURES)
    if unknown:
        msg = f"--allow-missing {', '.join(sorted(unknown))}: verify checks only {FEATURES}"
        raise UsageError(msg, fix=f"use one of {', '.join(FEATURES)}")
    features -= {a.lower() for a in args.allow_missing}
    return VerifyRequest(torch_version=args.torch, cuda=args.cuda, cpu=args.cpu, archs=archs,
                         features=tuple(sorted(features)), gpu_smoke=not args.no_gpu_smoke)


def _wheels_in(target: Path) -> list[Path]:
    wheels = sorted(target.glob("*.whl")) if target.is_dir() else [target]
    if not wheels:
        msg = f"no wheels in {target}"
        raise UsageError(msg, fix="point verify at the --dist directory of a build")
    return wheels


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    target = Path(args.target)
    if not target.exists() and shutil.which(str(target)) is None:
        # A typo in the path is a bad argument, not a missing tool.
        msg = f"verify: {target} does not exist"
        raise UsageError(msg, fix="pass a --dist directory, a wheel, or a Python interpreter "
                         "(path or name on PATH)")
    request = _manifest_request(args, target) or request_from_args(args)
    work = Path(args.work_dir).resolve()
    if target.is_dir() or target.suffix == ".whl":
        base = Path(args.python) if args.python else _manifest_python(target) or \
            Path(sys.executable)
        report = verify_wheels(_wheels_in(target), request, base_python=base, work_dir=work,
                               environ=environ)
    else:
        report = verify_installed(target, request, work_dir=work, environ=environ)
    _print(report, args.json)
    if args.compare:
        other = run_probe(Path(args.compare), [], companions=(), smoke=False, work_dir=work,
                          env=clean_env(environ))
        log.table(compare_rows(report.probe, other), ["", "this build", str(args.compare)])
    report.raise_for_failures()
    return 0


def _print(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    log.table(report.rows(), ["check", "status", "expected", "found"])
