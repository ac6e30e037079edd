"""Real git repositories for tests: stand-ins for pytorch/vision/audio with tags and a submodule.

``make_mirror_root(root)`` creates bare repos laid out like a git server under ``root``
(``root/pytorch/pytorch.git`` ...), so ``--git-mirror file://<root>`` redirects the recipe's
``https://git.example.invalid/...`` URLs there, submodules included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
PROJECTS = FIXTURES / "projects"
RECIPES = FIXTURES / "recipes"
UPSTREAM = "https://git.example.invalid/pytorch"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
}


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", "-c", "protocol.file.allow=always",
                          "-c", "init.defaultBranch=main", *args],
                         cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _commit_all(work: Path, message: str) -> str:
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def _publish(work: Path, bare: Path) -> None:
    bare.parent.mkdir(parents=True, exist_ok=True)
    if bare.exists():
        shutil.rmtree(bare)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=work.parent)


def _project(name: str, work: Path) -> None:
    shutil.copytree(PROJECTS / name, work, dirs_exist_ok=True)
    if name != "fakedep":
        shutil.copy(PROJECTS / "buildinfo.py", work / "buildinfo.py")


def make_mirror_root(root: Path, *, torch_versions: tuple[str, ...] = ("2.98.0", "2.99.0"),
                     vision_versions: tuple[str, ...] = ("0.98.0", "0.99.0"),
                     audio_versions: tuple[str, ...] = ("2.98.0", "2.99.0"),
                     fakedep_bytes: int = 0) -> dict[str, str]:
    """Create the bare repos; return {"<repo>@<tag>": commit} for assertions.

    ``fakedep_bytes``: an incompressible file of that size in the submodule (a submodule clone
    that needs real disk space)."""
    scratch = root.parent / (root.name + "-work")
    commits: dict[str, str] = {}
    dep = scratch / "fakedep"
    dep.mkdir(parents=True)
    git("init", "-q", cwd=dep)
    _project("fakedep", dep)
    if fakedep_bytes:
        (dep / "blob.bin").write_bytes(os.urandom(fakedep_bytes))
    commits["fakedep"] = _commit_all(dep, "fakedep")
    _publish(dep, root / "pytorch" / "fakedep.git")

    for name, versions in (("pytorch", torch_versions), ("vision", vision_versions),
                           ("audio", audio_versions)):
        work = scratch / name
        work.mkdir()
        git("init", "-q", cwd=work)
        _project({"pytorch": "torch"}.get(name, name), work)
        if name == "pytorch":
            git("submodule", "add", "-q", str(root / "pytorch" / "fakedep.git"),
                "third_party/fakedep", cwd=work)
            git("config", "--file", ".gitmodules", "submodule.third_party/fakedep.url",
                f"{UPSTREAM}/fakedep.git", cwd=work)
        for i, version in enumerate(versions):
            (work / "RELEASE").write_text(f"{version} {i}\n")
            commits[f"{name}@v{version}"] = _commit_all(work, f"release {version}")
            git("tag", f"v{version}", cwd=work)
        _publish(work, root / "pytorch" / f"{name}.git")
    return commits


def make_cppext_repo(root: Path) -> str:
    """The real-compile fixture (tests/fixtures/projects/cppext) as ``pytorch/cppext.git`` of a
    fixture server under ``root``, tagged v0.99.0; returns its commit (pytest-free: the
    benchmarks use it too)."""
    work = root.parent / "cppext-work"
    shutil.copytree(PROJECTS / "cppext", work)
    git("init", "-q", cwd=work)
    commit = _commit_all(work, "cppext")
    git("tag", "v0.99.0", cwd=work)
    _publish(work, root / "pytorch" / "cppext.git")
    return commit
