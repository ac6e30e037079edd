"""Every data file in recipes/ goes through knowledge/datafile.py: a wrong schema_version or an
unknown key is a RecipeError naming the file and the closest known key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from torchbuild.errors import RecipeError
from torchbuild.knowledge.conda_specs import load_conda_recipe
from torchbuild.knowledge.extensions import load_extensions
from torchbuild.knowledge.recipe import default_recipe_dir, load_recipes
from torchbuild.knowledge.rules import load_knowledge

LOADERS: dict[str, Callable[[Path], object]] = {
    "releases.toml": load_recipes, "components.toml": load_recipes, "venv.toml": load_recipes,
    "conda.toml": load_conda_recipe, "cuda.toml": load_knowledge,
    "archsyntax.toml": load_knowledge, "extensions.toml": load_extensions,
}


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "recipes"
    shutil.copytree(default_recipe_dir(), target)
    return target


def test_every_data_file_has_a_loader_here() -> None:
    assert {p.name for p in default_recipe_dir().glob("*.toml")} == set(LOADERS)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_data_file_of_another_schema_is_refused(name: str, tmp_path: Path) -> None:
    recipes = _copy(tmp_path)
    path = recipes / name
    path.write_text(path.read_text().replace("schema_version = 1", "schema_version = 7", 1))
    with pytest.raises(RecipeError, match=f"{name}: schema_version 7 is not supported"):
        LOADERS[name](recipes)


@pytest.mark.parametrize(("name", "key", "typo"), [
    ("cuda.toml", "max_gcc", "max_gc"),
    ("archsyntax.toml", "supported", "suported"),
])
def test_a_typo_in_the_knowledge_files_names_the_key(name: str, key: str, typo: str,
                                                     tmp_path: Path) -> None:
    recipes = _copy(tmp_path)
    path = recipes / name
    path.write_text(path.read_text().replace(f"\n{key} =", f"\n{typo} =", 1))
    with pytest.raises(RecipeError, match=f"unknown key '{typo}' \\(did you mean '{key}'\\?\\)"):
        LOADERS[name](recipes)
