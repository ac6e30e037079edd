"""``python -m torchbuild docker env|build|export|up``: the same build, in a container.

The container path adds no build logic: ``docker/Dockerfile`` runs ``python -m torchbuild`` with
build args that this module derives from the very options a bare-metal run takes. Deriving them in
one place, canonically (``--cc "8.6 7.5"`` and ``--cc 7.5,8.6`` give the same ``TB_CC``; versions
the recipe would pick are written out), means a rebuild with the same options always presents the
same args to the builder, so the layer cache is never missed by a forgotten or reordered arg
(Cresset's "word of caution"). Per-user args (UID, GID, TZ, TRAIN_USER) are consumed only by the
``train`` stage, after the build, so Alice and Bob share one build and get their own images.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torchbuild import command
from torchbuild.cc import parse_cc
from torchbuild.errors import CommandFailed, DockerError, GPUDetectionError, UsageError
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine import probes
from torchbuild.options import (
    OPTION_DEFS,
    HelpFormatter,
    Options,
    add_build_arguments,
    cli_values,
    require_target,
    resolve,
    to_argv,
)

VERBS = ("env", "build", "export", "up")
DOCKERFILE = "docker/Dockerfile"
COMPOSE_FILE = "docker-compose.yaml"
# NVIDIA tags need the full X.Y.Z (Cresset #32: `11.2-cudnn8-devel` does not exist).
CUDA_IMAGE_PATCH = {
    "11.8": "11.8.0", "12.1": "12.1.1", "12.4": "12.4.1", "12.6": "12.6.3",
    "12.8": "12.8.1", "12.9": "12.9.1", "13.0": "13.0.1",
}
CPU_BASE = "ubuntu:24.04"
NGC_TAG = "25.10-py3"
# Options that become their own build arg, in this order (readable in .env and image names).
NAMED = ("cc", "cpu", "torch", "vision", "audio", "text", "cuda", "python", "env")
# Which other options travel, stay on the host, or are refused is declared with each option
# (``container=`` in options.py), so a new option is classified where it is added.
_SAFE_TAG = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Container:
    """The container-only settings (everything else is a normal build option)."""

    train_name: str
    uid: int
    gid: int
    tz: str
    train_user: str = "user"
    base: str | None = None
    train_base: str | None = None
    distro: str | None = None
    smoke: bool = False
    env_file: Path = Path(".env")
    project_dir: Path = Path()


# ----------------------------------------------------------------------------- pure derivation


def _extra_args(options: Options) -> list[str]:
    """Every other option the user set, as CLI flags in the fixed declaration order."""
    for d in OPTION_DEFS:
        if d.container == "refuse" and options.given(d.name):
            msg = f"{d.flag} refers to the host and cannot be passed into the image"
            raise UsageError(msg, fix=f"drop {d.flag} for `docker`, or build on bare metal")
    out = to_argv(options, [d.name for d in OPTION_DEFS
                            if d.container == "pass" and d.name not in NAMED])
    for word in out:
        if not word or any(c.isspace() for c in word):
            msg = f"option value {word!r} has whitespace, which a build arg cannot carry"
            raise UsageError(msg, fix="use values without spaces for `docker`")
    return out


def build_args(options: Options, smoke: bool = False) -> dict[str, str]:
    """The build stage's args: a pure, canonical function of the options."""
    text = " ".join(str(a) for a in options.archs)
    args = {
        "TB_CC": "" if options.cpu else text,
        "TB_CPU": "1" if options.cpu else "0",
        "TB_TORCH": options.torch or "",
        "TB_VISION": options.vision or "",
        "TB_AUDIO": options.audio or "",
        "TB_TEXT": options.text or "",
        "TB_CUDA": "" if options.cpu else options.cuda or "",
        "TB_PYTHON": options.python or "",
        "TB_ENV": options.env if options.given("env") else "",
        "TB_EXTRA_ARGS": " ".join(_extra_args(options)),
        "TB_SMOKE": "1" if smoke else "0",
    }
    if smoke and options.env == "conda" and not options.given("env"):
        # The fixture projects need no conda env, and no conda channel is reachable in CI.
        args["TB_ENV"] = "venv"
    return args


def with_recipe_defaults(options: Options, recipe_dir: Path | None = None) -> Options:
    """Write out the torch and CUDA versions the recipe would pick.

    The image then records them, the base image can follow the CUDA version, and a newer
    torchbuild with a newer default rebuilds instead of silently reusing an old layer.
    """
    release = load_recipes(recipe_dir).release(options.torch)
    cuda = None if options.cpu else options.cuda or release.default_cuda or None
    return replace(options, torch=release.version, cuda=cuda)


def cuda_image_version(cuda: str) -> str:
    """``12.8`` -> ``12.8.1``: the newest patch we know, else ``X.Y.0`` (every GA has that tag)."""
    if not re.fullmatch(r"\d+\.\d+", cuda):
        msg = f"CUDA version {cuda!r} is not X.Y, so no nvidia/cuda image can be chosen"
        raise UsageError(msg, fix="pass --cuda X.Y, or --base IMAGE and --train-base IMAGE")
    return CUDA_IMAGE_PATCH.get(cuda, f"{cuda}.0")


def base_images(options: Options, container: Container) -> tuple[str, str]:
    """(build base, train base): NVIDIA's devel/runtime images for the CUDA version."""
    if options.cpu or container.smoke:
        default = (CPU_BASE, CPU_BASE)
    else:
        patch = cuda_image_version(options.cuda or "")
        major_minor = tuple(int(x) for x in patch.split(".")[:2])
        # cuDNN lost its major number in the tags at 12.4; Ubuntu 24.04 images start at 12.5.
        cudnn = "cudnn" if major_minor >= (12, 4) else "cudnn8"
        distro = container.distro or ("ubuntu24.04" if major_minor >= (12, 5) else "ubuntu22.04")
        stem = f"nvidia/cuda:{patch}-{cudnn}"
        default = (f"{stem}-devel-{distro}", f"{stem}-runtime-{distro}")
    return container.base or default[0], container.train_base or default[1]


def image_tag(args: Mapping[str, str]) -> str:
    """A readable tag from the build args: ``2.9.1-cu128-sm75.sm86-py3.12``."""
    parts = [args["TB_TORCH"] or "default"]
    if args["TB_CPU"] == "1":
        parts.append("cpu")
    else:
        parts.append("cu" + args["TB_CUDA"].replace(".", "") if args["TB_CUDA"] else "cuda")
        parts.append(".".join(a.tag for a in parse_cc(args["TB_CC"])) if args["TB_CC"] else "")
    if args["TB_PYTHON"]:
        parts.append("py" + args["TB_PYTHON"])
    if args["TB_SMOKE"] == "1":
        parts.append("smoke")
    return _SAFE_TAG.sub("_", "-".join(p for p in parts if p))[:128]


def env_values(options: Options, container: Container) -> dict[str, str]:
    """Everything the compose file and the docker commands read, as .env values."""
    args = build_args(options, container.smoke)
    base, train_base = base_images(options, container)
    tag = image_tag(args)
    name = _SAFE_TAG.sub("_", container.train_name).lower()
    return {
        "COMPOSE_PROJECT_NAME": f"torchbuild-{name}",
        "TRAIN_NAME": name,
        "TRAIN_IMAGE": f"torchbuild-train:{name}-{tag}"[:128],
        "UID": str(container.uid),
        "GID": str(container.gid),
        "TRAIN_USER": container.train_user,
        "TZ": container.tz,
        "BASE": base,
        "TRAIN_BASE": train_base,
        **args,
        "NGC_IMAGE": f"nvcr.io/nvidia/pytorch:{NGC_TAG}",
        # Compose resolves relative paths against the compose file (the checkout), not your
        # shell's directory: write it out so the volume is the project you ran this in.
        "PROJECT_DIR": str(container.project_dir),
        "EXTRA_APT_PACKAGES": "",
        "EXTRA_DNF_PACKAGES": "",
        "EXTRA_PIP_PACKAGES": "",
    }


def render_env_file(values: Mapping[str, str]) -> str:
    lines = [
        "# Written by `python -m torchbuild docker env`; re-run it rather than editing the",
        "# TB_* lines (they must match the options, or the build cache misses).",
        "# EXTRA_APT_PACKAGES / EXTRA_DNF_PACKAGES / EXTRA_PIP_PACKAGES are yours to fill.",
    ]
    if values.get("UID") == "0":
        lines.append("# UID=0: the train container runs as root (fine for rootless Docker).")
    lines += [f"{k}={_env_quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _env_quote(value: str) -> str:
    # Compose's .env syntax: double quotes keep spaces, e.g. TB_CC="7.5 8.6".
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@+,-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


BUILD_ARG_KEYS = ("BASE", "TRAIN_BASE", "TB_CC", "TB_CPU", "TB_TORCH", "TB_VISION", "TB_AUDIO",
                  "TB_TEXT", "TB_CUDA", "TB_PYTHON", "TB_ENV", "TB_EXTRA_ARGS", "TB_SMOKE")
TRAIN_ARG_KEYS = ("UID", "GID", "TRAIN_USER", "TZ", "EXTRA_APT_PACKAGES", "EXTRA_DNF_PACKAGES",
                  "EXTRA_PIP_PACKAGES")


def build_argv(values: Mapping[str, str], *, target: str, context: Path,
               dist: Path | None = None) -> list[str]:
    """``docker build`` for a target; ``export`` writes to ``dist`` instead of tagging an image."""
    keys = BUILD_ARG_KEYS + (TRAIN_ARG_KEYS if target == "train" else ())
    argv = ["docker", "build", "-f", str(context / DOCKERFILE), "--target", target]
    for key in keys:
        argv += ["--build-arg", f"{key}={values[key]}"]
    if target == "export":
        argv += ["--output", f"type=local,dest={dist or Path('dist')}"]
    else:
        argv += ["-t", values["TRAIN_IMAGE"]]
    return [*argv, str(context)]


def compose_argv(context: Path, env_file: Path, *verb: str) -> list[str]:
    return ["docker", "compose", "-f", str(context / COMPOSE_FILE), "--env-file", str(env_file),
            *verb]


def plan_commands(verb: str, values: Mapping[str, str], context: Path, env_file: Path,
                  dist: Path) -> list[list[str]]:
    if verb == "export":
        return [build_argv(values, target="export", context=context, dist=dist)]
    commands = [build_argv(values, target="train", context=context)]
    if verb == "up":
        commands.append(compose_argv(context, env_file, "up", "-d", "--no-build", "train"))
    return commands


# ---------------------------------------------------------------------------------- the CLI

DESCRIPTION = """\
Write .env, or print and run the docker/compose commands that build the same wheels in a
container. Takes the build options that travel into the image, plus --dist (where export puts
the wheels), --cache-dir (where an installed torchbuild lays out the build context: the Dockerfile
and compose file it carries) and --dry-run (print the commands, write and run nothing).

  torchbuild docker export --cc 8.6     # wheels + manifest in ./dist
  torchbuild docker up --cc 8.6         # a training container with those wheels"""
# The build options `docker` lists: those that travel into the image, and the host-side ones it
# reads itself (--cache-dir: where an installed wheel lays out its build context). The others name
# host paths the image lacks (refused when they come from a TORCHBUILD_* variable or a config
# file) or are the image's own choice (the work dir).
DOCKER_OPTIONS = (*(d.name for d in OPTION_DEFS if d.container == "pass"), "dist", "cache_dir",
                  "dry_run")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "docker", help="build in a container: env | build | export | up",
        description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("verb", choices=VERBS, help="env: write .env; build: the train image; "
                        "export: wheels into --dist; up: build and start the train service")
    group = parser.add_argument_group("container")
    group.add_argument("--train-name", help="name of this training image (default: your user)")
    group.add_argument("--uid", type=int, help="user id in the train image (default: yours)")
    group.add_argument("--gid", type=int, help="group id in the train image (default: yours)")
    group.add_argument("--tz", help="time zone of the train image (default: the host's, or UTC)")
    group.add_argument("--train-user", default="user", help="user name in the train image")
    group.add_argument("--base", help="build stage base image (default: nvidia/cuda devel)")
    group.add_argument("--train-base", help="train stage base image (default: nvidia/cuda runtime)")
    group.add_argument("--distro", help="nvidia/cuda image flavour: ubuntu24.04 (default from "
                       "CUDA 12.5), ubuntu22.04, rockylinux9, ubi9")
    group.add_argument("--env-file", type=Path, default=Path(".env"), help="where .env goes")
    group.add_argument("--context", type=Path, help="torchbuild checkout used as build context")
    group.add_argument("--smoke", action="store_true", help="build the tiny fixture projects "
                       "(tests/fixtures/smoke) instead of PyTorch: proves the wiring in minutes")
    add_build_arguments(parser, DOCKER_OPTIONS)
    parser.set_defaults(func=main)


def host_timezone(environ: Mapping[str, str], etc: Path = Path("/etc")) -> str:
    if environ.get("TZ"):
        return environ["TZ"].lstrip(":")
    try:
        return (etc / "timezone").read_text(encoding="utf-8").strip() or "UTC"
    except OSError:
        pass
    target = os.path.realpath(etc / "localtime")
    marker = "/zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def _user_name(environ: Mapping[str, str]) -> str:
    try:
        return environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (inside a container, say)
        return "torchbuild"


def container_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Container:
    name = args.train_name or _user_name(environ)
    return Container(
        train_name=name,
        uid=os.getuid() if args.uid is None else args.uid,
        gid=os.getgid() if args.gid is None else args.gid,
        tz=args.tz or host_timezone(environ),
        train_user=args.train_user,
        base=args.base,
        train_base=args.train_base,
        distro=args.distro,
        smoke=args.smoke,
        env_file=args.env_file,
        project_dir=Path.cwd(),
    )


def resolve_cc_auto(options: Options, environ: Mapping[str, str]) -> Options:
    """``--cc auto`` (and no --cc at all, for `docker`): the host's GPUs, read once, here."""
    report = probes.run_nvidia_smi(environ)
    caps = sorted({g.compute_cap for g in report.gpus if g.compute_cap})
    if report.status != "ok" or not caps:
        msg = f"--cc auto needs a visible GPU, but nvidia-smi reports: {report.status}"
        raise GPUDetectionError(msg, fix="pass --cc X.Y for the GPUs the image is for, or --cpu")
    return replace(options, archs=parse_cc(" ".join(caps)), cc_auto=False)


def resolve_options(args: argparse.Namespace, environ: Mapping[str, str],
                    container: Container) -> Options:
    options = resolve(cli_values(args), environ)
    if container.smoke:
        return options if options.archs or options.cpu else replace(options, cpu=True)
    if options.cc_auto or not (options.archs or options.cpu):
        options = resolve_cc_auto(options, environ)
    require_target(options)
    return with_recipe_defaults(options)


# src/torchbuild in a checkout, site-packages/torchbuild in an installed wheel.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# An installed wheel carries the container files here (pyproject's force-include).
PACKAGED = PACKAGE_DIR / "docker_context"


def packaged_context(cache_dir: Path, *, write: bool) -> Path:
    """The build context of an installed wheel, laid out as a checkout: its packaged container
    files (Dockerfile, compose file, pyproject.toml, smoke fixtures) beside a copy of this very
    package as src/torchbuild and its recipes as recipes/, so the image installs the torchbuild
    that wrote the commands. Assembled afresh each time (about 2 MB), then renamed into place."""
    target = cache_dir / "docker-context"
    if not write:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".docker-context-", dir=cache_dir))
    try:
        tree = staging / "context"
        shutil.copytree(PACKAGED, tree)
        shutil.copytree(PACKAGE_DIR, tree / "src" / "torchbuild", ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", PACKAGED.name, "recipes"))
        shutil.copytree(PACKAGE_DIR / "recipes", tree / "recipes")
        old = staging / "old"
        if target.exists():
            target.rename(old)
        tree.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_context(given: Path | None, cache_dir: Path, *, write: bool = True) -> Path:
    """--context, else the checkout this module runs from, else the installed wheel's files."""
    checkout = PACKAGE_DIR.parents[1]
    candidates = [given] if given else [checkout]
    for path in candidates:
        if (path / DOCKERFILE).is_file():
            return path
    if given is None and (PACKAGED / DOCKERFILE).is_file():
        return packaged_context(cache_dir, write=write)
    msg = f"no {DOCKERFILE} found in {', '.join(str(c) for c in candidates)}"
    raise DockerError(msg, fix="pass --context DIR (a torchbuild checkout), or reinstall "
                      "torchbuild from a wheel, which carries the container files")


USER_KEYS = ("EXTRA_APT_PACKAGES", "EXTRA_DNF_PACKAGES", "EXTRA_PIP_PACKAGES", "PROJECT_DIR")


def parse_env_file(text: str) -> dict[str, str]:
    """The KEY=VALUE lines of a .env (as written by render_env_file, or by hand)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key.strip()] = value
    return out


def merge_user_values(values: Mapping[str, str], previous: Mapping[str, str]) -> dict[str, str]:
    """Regenerate every derived value, but keep what the user added or filled in by hand."""
    merged = dict(values)
    for key, value in previous.items():
        if key in USER_KEYS or key not in merged:
            merged[key] = value
    return merged


def _previous_env(path: Path) -> dict[str, str]:
    return parse_env_file(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_env_file(path: Path, values: Mapping[str, str]) -> dict[str, str]:
    merged = merge_user_values(values, _previous_env(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_env_file(merged), encoding="utf-8")
    tmp.replace(path)
    return merged


def engine_problem(environ: Mapping[str, str]) -> str | None:
    """Why docker commands cannot run here, or None when an engine answers."""
    found = command.probe(["docker", "info", "--format", "{{.ServerVersion}}"], env=environ)
    if found is None:
        return "the `docker` command is not installed"
    rc, out, err = found
    if rc != 0 or not out.strip():
        first = (err or out).strip().splitlines()[:1]
        return "no Docker engine answers" + (f" ({first[0]})" if first else "")
    return None


def _print(commands: Sequence[Sequence[str]]) -> None:
    for argv in commands:
        print("DOCKER_BUILDKIT=1 " + shlex.join(argv), flush=True)


def run_commands(commands: Sequence[Sequence[str]], environ: Mapping[str, str]) -> None:
    env = {**environ, "DOCKER_BUILDKIT": "1"}
    for argv in commands:
        try:
            command.run(argv, env=env, echo=print)
        except CommandFailed as exc:
            msg = f"`{shlex.join(argv)}` exited with {exc.returncode}"
            raise DockerError(msg, fix="read the docker output above; re-running the same "
                              "command reuses every cached layer") from None


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    container = container_settings(args, environ)
    options = resolve_options(args, environ, container)
    derived = env_values(options, container)
    if options.dry_run:   # a dry run writes nothing, .env included
        values = merge_user_values(derived, _previous_env(container.env_file))
        print(f"would write {container.env_file} (image {values['TRAIN_IMAGE']})", flush=True)
    else:
        values = write_env_file(container.env_file, derived)
        print(f"wrote {container.env_file} (image {values['TRAIN_IMAGE']})", flush=True)
    if args.verb == "env":
        return 0
    context = find_context(args.context, options.cache_dir, write=not options.dry_run)
    print(f"build context: {context}", flush=True)
    commands = plan_commands(args.verb, values, context, container.env_file, options.dist)
    _print(commands)
    if options.dry_run:
        return 0
    problem = engine_problem(environ)
    if problem:
        msg = f"{problem}; the commands above are what would run"
        raise DockerError(msg, fix="start Docker (with BuildKit) and re-run, or run the printed "
                          "commands where Docker is; --dry-run only prints them")
    run_commands(commands, environ)
    return 0
