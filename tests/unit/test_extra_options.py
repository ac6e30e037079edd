"""How ``--extra`` values arrive: through ``fetch``, and several in ``TORCHBUILD_EXTRA``."""

from __future__ import annotations

import argparse
from pathlib import Path

from packaging.specifiers import SpecifierSet

from torchbuild.commands import fetch
from torchbuild.knowledge.extensions import load_extensions, parse_extra
from torchbuild.options import resolve


def _fetch_cli(*argv: str) -> dict:
    parser = argparse.ArgumentParser(prog="torchbuild")
    fetch.register(parser.add_subparsers(dest="verb"))
    args = vars(parser.parse_args(["fetch", *argv]))
    return {k: v for k, v in args.items() if k not in {"verb", "func"}}


def test_fetch_takes_the_extras_and_torch_from_env_the_build_will_use(tmp_path):
    # The GPU run fills its offline cache this way (scripts/prepare_gpu_extra_carry.sh): without
    # these two options fetch planned a torch build and downloaded no sdist.
    cli = _fetch_cli("--cc", "9.0", "--torch-from-env", "--env", "existing",
                     "--extra", "causal-conv1d==1.7.0", "--extra", "flash-attn==2.8.3")
    opts = resolve(cli, {"HOME": str(tmp_path)})
    assert opts.extra == ("causal-conv1d==1.7.0", "flash-attn==2.8.3")
    assert opts.torch_from_env is True
    assert opts.origin["extra"] == "command line"


def test_torchbuild_extra_splits_specs_but_keeps_a_specifiers_commas(tmp_path):
    environ = {"HOME": str(tmp_path),
               "TORCHBUILD_EXTRA": "flash-attn==2.8.3,causal-conv1d>=1.4,<2 ./my-ext\n"
                                   "git+https://github.com/facebookresearch/xformers@v0.0.35, "
                                   "mamba-ssm >= 2.2, < 3"}
    opts = resolve({}, environ)
    assert opts.extra == ("flash-attn==2.8.3", "causal-conv1d>=1.4,<2", "./my-ext",
                          "git+https://github.com/facebookresearch/xformers@v0.0.35",
                          "mamba-ssm >= 2.2, < 3")
    assert opts.origin["extra"] == "env TORCHBUILD_EXTRA"


def test_each_split_spec_is_one_the_extra_parser_takes(tmp_path):
    # What the split gives is parsed like a --extra value: the specifier survives whole.
    book = load_extensions(Path(__file__).resolve().parents[2] / "recipes")
    opts = resolve({}, {"HOME": str(tmp_path), "TORCHBUILD_EXTRA": "causal-conv1d>=1.4,<2"})
    (req,) = (parse_extra(spec, book) for spec in opts.extra)
    assert (req.kind, req.name, SpecifierSet(req.specifier)) == \
        ("pypi", "causal-conv1d", SpecifierSet(">=1.4,<2"))


def test_a_config_list_is_taken_as_it_is(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[torchbuild]\nextra = ["causal-conv1d>=1.4,<2", "flash-attn==2.8.3"]\n')
    opts = resolve({"config": str(cfg)}, {"HOME": str(tmp_path)})
    assert opts.extra == ("causal-conv1d>=1.4,<2", "flash-attn==2.8.3")
