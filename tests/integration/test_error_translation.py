"""Every subprocess failure that can reach main() is a typed error with a fix (issue #11).

Real git and real programs fail here; where a failure needs a broken git in the middle of a good
run, one real call is replaced by a failing one (the rest of the run stays real).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from torchbuild.build import compiler_cache, sources
from torchbuild.build.steps import clean_tree
from torchbuild.env import conda
from torchbuild.env.buildenv import base_environment
from torchbuild.errors import (
    BuildStepError,
    CommandFailed,
    EnvironmentSetupError,
    SourceError,
    WheelInstallError,
)
from torchbuild.plan import SourceSpec, Step
from torchbuild.proof import verify

pytestmark = pytest.mark.integration
UPSTREAM = "https://git.example.invalid/pytorch/pytorch.git"


def _ctx(root: Path, tmp: Path) -> sources.GitContext:
    env = base_environment({"PATH": "/usr/bin:/bin", "HOME": str(tmp)})
    return sources.GitContext(tmp / "cache", env, f"file://{root}", False, tmp / "git.log")


@pytest.fixture
def checked_out(mirror_root: tuple[Path, dict[str, str]], tmp_path: Path
                ) -> tuple[SourceSpec, sources.GitContext]:
    root, _ = mirror_root
    ctx = _ctx(root, tmp_path)
    spec = SourceSpec("torch", UPSTREAM, f"file://{root}/pytorch/pytorch.git", "v2.99.0",
                      tmp_path / "src" / "torch")
    sources.checkout(spec, ctx)
    return spec, ctx


def test_a_broken_checkout_is_a_source_error(checked_out: tuple[SourceSpec, sources.GitContext],
                                             tmp_path: Path) -> None:
    spec, ctx = checked_out
    other = SourceSpec(spec.name, spec.url, spec.fetch_url, "v2.98.0", spec.path)
    (spec.path / ".git" / "HEAD").write_text("garbage\n")   # git no longer sees a repository
    with pytest.raises(SourceError) as info:
        sources.checkout(other, ctx)
    assert info.value.exit_code == 11
    assert f"delete {spec.path}" in (info.value.fix or "")
    # The suggested fix is one the tool accepts: without the checkout, the same call works.
    shutil.rmtree(spec.path)
    assert sources.checkout(other, ctx).tag == "v2.98.0"


def test_a_failing_submodule_update_is_a_source_error(
        checked_out: tuple[SourceSpec, sources.GitContext],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec, ctx = checked_out
    real = sources._git

    def submodule_fails(args: list[str], context: sources.GitContext,
                        cwd: Path | None = None, **kwargs: bool) -> None:
        if "submodule" in args:
            raise CommandFailed(["git", *args], 1, digest=["fatal: could not read the module"])
        real(args, context, cwd, **kwargs)

    monkeypatch.setattr(sources, "_git", submodule_fails)
    with pytest.raises(SourceError, match="could not read the module") as info:
        sources.checkout(spec, ctx)   # the checkout is there: only the submodules run
    assert info.value.fix and "re-run the same command" in info.value.fix


def test_a_tree_git_cannot_clean_is_a_build_step_error(tmp_path: Path) -> None:
    tree = tmp_path / "src" / "torch"
    tree.mkdir(parents=True)
    (tree / ".git").write_text("gitdir: /nonexistent/modules/torch\n")   # a dangling worktree
    step = Step("build-torch", "build", "torch", ("true",), tree, {}, "build torch")
    with pytest.raises(BuildStepError) as info:
        clean_tree(step, base_environment({"PATH": "/usr/bin:/bin"}), tmp_path / "clean.log")
    assert info.value.exit_code == 12 and f"delete {tree}" in (info.value.fix or "")


def test_unreadable_cache_counters_do_not_fail_the_build(tmp_path: Path) -> None:
    broken = compiler_cache.CompilerCache("ccache", "/bin/false", tmp_path / "ccache")
    assert compiler_cache.stats(broken, {"PATH": "/usr/bin:/bin"}) == compiler_cache.CacheStats()


def test_an_env_that_cannot_list_its_packages_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSetupError) as info:
        conda._installed(Path("/bin/false"), ["torch"], {"PATH": "/usr/bin:/bin"})
    assert info.value.exit_code == 8 and "-c pass" in (info.value.fix or "")


def test_a_mirror_that_cannot_resolve_a_tag_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "empty.git").mkdir()
    with pytest.raises(SourceError, match="cannot resolve refs/tags/v1") as info:
        sources._resolve(tmp_path / "empty.git", "refs/tags/v1", {"PATH": "/usr/bin:/bin"})
    assert info.value.fix and f"delete {tmp_path / 'empty.git'}" in info.value.fix


def test_a_base_python_that_does_not_run_is_a_wheel_install_error(tmp_path: Path) -> None:
    with pytest.raises(WheelInstallError) as info:
        verify._site_dirs(Path("/bin/false"), {"PATH": "/usr/bin:/bin"})
    assert info.value.exit_code == 20 and "-I -c pass" in (info.value.fix or "")
