from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from torchbuild.errors import RecipeError
from torchbuild.knowledge.recipe import default_recipe_dir, load_recipes

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_builtin_recipes_load():
    book = load_recipes()
    assert default_recipe_dir() == REPO_RECIPES
    assert book.newest == "2.15.0"
    assert {"1.9.1", "2.4.0", "2.9.1", "2.15.0"} <= set(book.releases)
    assert book.release(None).version == "2.15.0"
    assert book.release("1.9.1").text == "0.10.1"
    assert book.release("2.4.0").text == ""


def test_unknown_version_suggests():
    with pytest.raises(RecipeError, match="did you mean '2.9.1'"):
        load_recipes().release("2.9.2")


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "r"
    shutil.copytree(REPO_RECIPES, dst)
    return dst


@pytest.mark.parametrize(
    ("file", "old", "new", "match"),
    [
        ("releases.toml", 'default_cuda = "13.2"', 'defualt_cuda = "13.2"',
         "unknown key 'defualt_cuda' \\(did you mean 'default_cuda'\\?\\)"),
        ("components.toml", 'dist = "torchvision"', 'dsit = "torchvision"', "did you mean 'dist'"),
        ("components.toml", 'when = { torch = "<2.5" }', 'when = { torhc = "<2.5" }',
         "did you mean 'torch'"),
        ("components.toml", 'when = { torch = "<2.5" }', 'when = { torch = "lt 2.5" }',
         "not a version specifier"),
        ("releases.toml", "schema_version = 1", "schema_version = 7", "schema_version 7"),
        ("releases.toml", "cxx_std = 20", 'cxx_std = "20"', "must be a int"),
        ("components.toml", 'BUILD_TEST = "0"', "BUILD_TEST = 0", "must be a string"),
        ("components.toml", "disk_gb = { cuda = 40, cpu = 15 }", "disk_gb = { cuda = 40 }",
         "required key 'cpu'"),
        ("components.toml", "disk_gb = { cuda = 40, cpu = 15 }",
         'disk_gb = { cuda = "40", cpu = 15 }', "'cuda' must be a int/float"),
        ("components.toml", "disk_gb = { cuda = 40, cpu = 15 }",
         "disk_gb = { cuda = -1, cpu = 15 }", "must not be negative"),
    ],
)
def test_invalid_recipes_are_refused(tmp_path, file, old, new, match):
    d = _copy(tmp_path)
    text = (d / file).read_text()
    assert old in text
    (d / file).write_text(text.replace(old, new, 1))
    with pytest.raises(RecipeError, match=match):
        load_recipes(d)


def test_era_rules():
    book = load_recipes()
    torch = book.components["torch"]
    assert torch.build_argv("1.9.1", True)[1] == "setup.py"
    assert torch.build_argv("2.9.1", True)[1:4] == ("-m", "pip", "wheel")
    assert torch.env_values("2.4.0", True)["USE_QNNPACK"] == "0"
    assert "USE_QNNPACK" not in torch.env_values("2.9.1", True)
    assert torch.env_values("2.9.1", False)["USE_CUDA"] == "0"
    assert book.venv_packages("2.4.0", True, "x86_64")[-3:] == ("cmake>=3.18,<4", "mkl-static",
                                                              "mkl-include")
    assert "mkl-static" not in book.venv_packages("2.9.1", True, "aarch64")


def test_disk_estimate_is_recipe_data():
    """Preflight's disk figure comes from each component's `disk_gb`; a component without one
    (the companions) is counted at 2 GB."""
    book = load_recipes()
    assert book.components["torch"].disk_for(cuda=True) == 40.0
    assert book.components["torch"].disk_for(cuda=False) == 15.0
    assert book.components["vision"].disk_for(cuda=True) == 2.0
