"""Numerical smoke test of a built torch (run inside the env that has it; never imports torchbuild).

matmul, conv2d with autograd (gradcheck in float64), rfft and linalg (inv, solve), each against an
independent reference (numpy, or the defining identity). Prints one line per check and exits 1 on
the first wrong answer. ``--device cuda`` runs the same on the GPU when the build has CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys

# isort: off
# torch before numpy: on the GPU machine's image, importing its numpy 2.5.2 first made loading a
# source-built torch 2.6.0's torch._C segfault (benchmarks/results/gpu-real-torch-2.6.0.md).
import torch
import torch.nn.functional as F
import numpy as np
# isort: on


def check_matmul(dev: str) -> str:
    a, b = np.random.rand(257, 129), np.random.rand(129, 65)
    got = (torch.from_numpy(a).to(dev) @ torch.from_numpy(b).to(dev)).cpu().numpy()
    err = float(np.linalg.norm(got - a @ b) / np.linalg.norm(a @ b))
    assert err < 1e-12, err
    return f"rel err {err:.1e}"


def check_conv2d_autograd(dev: str) -> str:
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, device=dev, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=dev, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w))
    assert ok
    y = F.conv2d(x, w, padding=1)
    y.square().sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    return "gradcheck passed"


def check_rfft(dev: str) -> str:
    a = np.random.rand(1000)
    got = torch.fft.rfft(torch.from_numpy(a).to(dev)).cpu().numpy()
    err = float(np.abs(got - np.fft.rfft(a)).max())
    assert err < 1e-9, err
    return f"max err {err:.1e}"


def check_linalg(dev: str) -> str:
    a = torch.randn(64, 64, dtype=torch.float64, device=dev) + 8 * torch.eye(64, device=dev,
                                                                             dtype=torch.float64)
    eye = torch.eye(64, dtype=torch.float64, device=dev)
    inv_err = float((torch.linalg.inv(a) @ a - eye).abs().max())
    b = torch.randn(64, 3, dtype=torch.float64, device=dev)
    solve_err = float((a @ torch.linalg.solve(a, b) - b).abs().max())
    assert inv_err < 1e-10, inv_err
    assert solve_err < 1e-10, solve_err
    return f"inv err {inv_err:.1e}, solve err {solve_err:.1e}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    results: dict[str, str] = {"torch": torch.__version__, "file": torch.__file__}
    for check in (check_matmul, check_conv2d_autograd, check_rfft, check_linalg):
        name = check.__name__.removeprefix("check_")
        try:
            results[name] = "ok: " + check(args.device)
        except Exception as exc:  # noqa: BLE001 - report which check, then fail
            results[name] = f"FAILED: {exc!r}"
        print(f"{name:<16} {results[name]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 1 if any(v.startswith("FAILED") for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
