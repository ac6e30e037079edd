"""How ``--extra`` values arrive: through ``fetch``, and several in ``TORCHBUILD_EXTRA``."""

from __future__ import annotations

import argparse

from torchbuild.commands import fetch
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
