"""Fixture repos for the resume / cache / offline tests and benchmarks (issue #6).

``make_resume_server(root)`` publishes two bare repos under ``root/pytorch/`` (the layout
``--git-mirror file://<root>`` expects): a "torch" whose build is a real ninja build of N small
C++ files (one per second or so, printing ninja's ``[N/M]`` progress, resumable like torch's own
build), with a submodule, and a "vision" with a short ninja build. Every compile appends its
output name to ``compiled.log`` in the checkout, so a test can tell a continued build (each unit
compiled once) from one that started over, and a cleaned tree from a reused one.

``write_recipes(dir)`` writes a recipe dir for them; ``cli_args`` the common CLI arguments.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gitrepos import UPSTREAM, _commit_all, _publish, git

UNITS = 8

BUILD_PY = '''\
"""Fixture build: ninja over the units (resumable), then a wheel of the package."""
import os
import subprocess
import sys

wheel_dir = sys.argv[1]
subprocess.run(["ninja", "-j1"], check=True)
subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps",
                "--no-index", "-q", "--wheel-dir", wheel_dir], check=True)
'''

SETUP_PY = '''\
import os
from setuptools import setup
setup(name="{dist}", version=os.environ.get("{version_var}", "0.0.0"), packages=["{pkg}"])
'''


def _ninja(units: int, delay: str) -> str:
    lines = ["rule cxx",
             f"  command = sleep {delay} && g++ -O1 -c $in -o $out && echo $out >> compiled.log",
             "  description = CXX $out", ""]
    lines += [f"build build/u{i}.o: cxx src/u{i}.cpp" for i in range(units)]
    return "\n".join(lines) + "\n"


def _project(work: Path, dist: str, pkg: str, version_var: str, units: int, delay: str,
             requirements: str = "") -> None:
    (work / "src").mkdir(parents=True)
    if requirements:
        (work / "requirements.txt").write_text(requirements)
    for i in range(units):
        (work / "src" / f"u{i}.cpp").write_text(
            "#include <map>\n#include <string>\n"
            f"int u{i}() {{ std::map<std::string, int> m{{{{\"a\", {i}}}}}; return m[\"a\"]; }}\n")
    (work / "build.ninja").write_text(_ninja(units, delay))
    (work / "build.py").write_text(BUILD_PY)
    (work / "setup.py").write_text(SETUP_PY.format(dist=dist, pkg=pkg, version_var=version_var))
    (work / pkg).mkdir()
    (work / pkg / "__init__.py").write_text("")
    (work / ".gitignore").write_text("")


def make_resume_server(root: Path, *, units: int = UNITS, delay: str = "0.6",
                       vision_include: str = "", requirements: str = "") -> dict[str, str]:
    """Bare repos ``pytorch.git`` (tag v2.99.0, with a submodule) and ``vision.git`` (v0.99.0).

    ``vision_include`` is #included by vision's first unit (a missing header makes it fail the way
    a real build does); ``requirements`` becomes torch's requirements.txt."""
    scratch = root.parent / (root.name + "-work")
    commits: dict[str, str] = {}
    dep = scratch / "fakedep"
    dep.mkdir(parents=True)
    git("init", "-q", cwd=dep)
    (dep / "VERSION").write_text("1.2.3\n")
    commits["fakedep"] = _commit_all(dep, "fakedep")
    _publish(dep, root / "pytorch" / "fakedep.git")
    for name, dist, pkg, var, n, tag in (
            ("pytorch", "torch", "torch", "PYTORCH_BUILD_VERSION", units, "v2.99.0"),
            ("vision", "torchvision", "torchvision", "BUILD_VERSION", 2, "v0.99.0")):
        work = scratch / name
        work.mkdir()
        git("init", "-q", cwd=work)
        _project(work, dist, pkg, var, n, delay if name == "pytorch" else "0",
                 requirements if name == "pytorch" else "")
        if name == "vision" and vision_include:
            unit = work / "src" / "u0.cpp"
            unit.write_text(f"#include <{vision_include}>\n" + unit.read_text())
        if name == "pytorch":
            git("submodule", "add", "-q", str(root / "pytorch" / "fakedep.git"),
                "third_party/fakedep", cwd=work)
            git("config", "--file", ".gitmodules", "submodule.third_party/fakedep.url",
                f"{UPSTREAM}/fakedep.git", cwd=work)
        commits[f"{name}@{tag}"] = _commit_all(work, f"{name} {tag}")
        git("tag", tag, cwd=work)
        _publish(work, root / "pytorch" / f"{name}.git")
    return commits


COMPONENTS = '''\
schema_version = 1
order = ["torch", "vision"]

[components.torch]
repo = "https://git.example.invalid/pytorch/pytorch.git"
dist = "torch"
[[components.torch.build]]
argv = ["{python}", "build.py", "{wheel_dir}"]
[[components.torch.env]]
values = { MAX_JOBS = "{jobs}", PYTORCH_BUILD_VERSION = "{version}", USE_CUDA = "0" }

[components.vision]
repo = "https://git.example.invalid/pytorch/vision.git"
dist = "torchvision"
[[components.vision.build]]
argv = ["{python}", "build.py", "{wheel_dir}"]
[[components.vision.env]]
values = { BUILD_VERSION = "{version}"VISION_EXTRA }
'''

RELEASES = '''\
schema_version = 1
newest = "2.99.0"

[releases."2.99.0"]
tag = "v2.99.0"
vision = "0.99.0"
vision_tag = "v0.99.0"
python_min = "3.10"
python_max = "3.14"
'''


DEPS = '''
[[components.torch.deps]]
argv = ["{python}", "-m", "pip", "install", "-r", "requirements.txt"]
'''


def write_recipes(dest: Path, *, vision_flag: str | None = None, deps: bool = False) -> Path:
    """A recipe dir for the resume repos; ``vision_flag`` adds ``VISION_FLAG`` to vision's env;
    ``deps`` gives torch a deps step installing its requirements.txt (from the index pip is
    configured with)."""
    dest.mkdir(parents=True, exist_ok=True)
    extra = f', VISION_FLAG = "{vision_flag}"' if vision_flag is not None else ""
    components = COMPONENTS.replace("VISION_EXTRA", extra)
    if deps:
        components = components.replace('dist = "torch"\n', 'dist = "torch"\n' + DEPS, 1)
    (dest / "components.toml").write_text(components)
    (dest / "releases.toml").write_text(RELEASES)
    return dest


def cli_args(root: Path, recipes: Path, tmp: Path, python: Path, *extra: str) -> list[str]:
    return ["--recipe-dir", str(recipes), "--git-mirror", f"file://{root}",
            "--env", "existing", "--python", str(python), "--cpu", "--no-verify",
            "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"),
            "--dist", str(tmp / "dist"), *extra]


# Build-only options that `torchbuild fetch` refuses (they mean nothing there), with their values.
_BUILD_ONLY = {"--no-verify": 0, "--force": 0, "--clean": 0, "--dist": 1}


def fetch_args(args: list[str]) -> list[str]:
    """The same request for `torchbuild fetch`: ``args`` less the build-only options."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
        elif arg in _BUILD_ONLY:
            skip = _BUILD_ONLY[arg]
        else:
            out.append(arg)
    return out


def compiled(checkout: Path) -> list[str]:
    log = checkout / "compiled.log"
    return log.read_text().split() if log.exists() else []


def copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True)


EXTRA_UNIT = """#include <torch/extension.h>
at::Tensor extra{n}(const at::Tensor& a) {{ return a * {n} + 1; }}
"""


def make_cppext_server(root: Path, *, extra_units: int = 0) -> str:
    """The real-compile fixture (a C++ torch operator, tests/fixtures/projects/cppext) as the
    "vision" repo (tag v0.99.0) of a fixture server; returns its commit.

    ``extra_units`` adds that many more translation units (each includes torch/extension.h, the
    expensive part), for benchmarks that want compile time to dominate the fixed overhead."""
    from gitrepos import PROJECTS

    work = root.parent / (root.name + "-cppext-work")
    shutil.copytree(PROJECTS / "cppext", work)
    if extra_units:
        names = [f"csrc/extra{n}.cpp" for n in range(extra_units)]
        for n, name in enumerate(names):
            (work / name).write_text(EXTRA_UNIT.format(n=n))
        setup = (work / "setup.py").read_text()
        listed = ", ".join(f'"{name}"' for name in ["csrc/ops.cpp", *names])
        (work / "setup.py").write_text(setup.replace('["csrc/ops.cpp"]', f"[{listed}]"))
    git("init", "-q", cwd=work)
    commit = _commit_all(work, "cppext")
    git("tag", "v0.99.0", cwd=work)
    _publish(work, root / "pytorch" / "cppext.git")
    return commit


def cppext_args(root: Path, torch_python: Path, work: Path, cache: Path, dist: Path,
                *extra: str) -> list[str]:
    """CLI arguments that build the cppext fixture against the real torch in ``torch_python``."""
    from gitrepos import FIXTURES

    return ["--recipe-dir", str(FIXTURES / "recipes-cppext"), "--git-mirror", f"file://{root}",
            "--env", "existing", "--python", str(torch_python), "--torch-from-env", "--cpu",
            "--no-verify", "--work-dir", str(work), "--cache-dir", str(cache), "--dist",
            str(dist), *extra]
