"""Probe run by ``torchbuild verify`` inside the throwaway env (``python -I verify_probe.py JSON``).

Standard library and the wheels under test only: it must never import torchbuild.
"""
import importlib
import importlib.metadata as md
import json
import os
import sys


def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except BaseException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}

def binaries(dist):
    files = md.distribution(dist).files or []
    return [str(f.locate()) for f in files if f.name.endswith(".so") or ".so." in f.name]

def settings(text):
    line = next((ln for ln in text.splitlines() if "Build settings:" in ln), "")
    body = line.split("Build settings:", 1)[-1]
    out, key = {}, None
    for part in body.split(", "):
        name, eq, value = part.partition("=")
        if eq and name.strip().replace("_", "").isalnum() and name.strip().isupper():
            key = name.strip()
            out[key] = value.strip()
        elif key:
            out[key] += ", " + part
    return {k: v.strip().rstrip(",").strip() for k, v in out.items()}

def arch_flags(torch):
    get = getattr(torch._C, "_cuda_getArchFlags", None)
    flags = get() if get else None
    return flags.split() if flags else []

def gpu_smoke(torch, vision):
    import torch.nn.functional as F
    dev = torch.device("cuda")
    res = {}
    a = torch.randn(256, 256)
    res["matmul"] = attempt(lambda: bool(torch.allclose((a.to(dev) @ a.to(dev)).cpu(), a @ a,
                                                        rtol=1e-2, atol=1e-2)))
    x, w = torch.randn(2, 3, 32, 32), torch.randn(8, 3, 3, 3)
    res["conv2d"] = attempt(lambda: bool(torch.allclose(F.conv2d(x.to(dev), w.to(dev)).cpu(),
                                                        F.conv2d(x, w), rtol=1e-2, atol=1e-2)))
    if vision:
        b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        s = torch.tensor([0.9, 0.8, 0.7])
        res["nms"] = attempt(lambda: torch.ops.torchvision.nms(b.to(dev), s.to(dev), 0.5)
                             .cpu().tolist() == [0, 2])
    torch.cuda.synchronize()
    return res

def companion(torch, name):
    mod = importlib.import_module(name)
    info = {"version": getattr(mod, "__version__", None), "file": mod.__file__,
            "requires": [r for r in (md.requires(name) or [])]}
    if name == "torchvision":
        b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        s = torch.tensor([0.9, 0.8, 0.7])
        info["ops"] = attempt(lambda: torch.ops.torchvision.nms(b, s, 0.5).tolist() == [0, 2])
        info["cuda"] = attempt(lambda: mod.version.cuda)
    elif name == "torchaudio":
        # <= 2.8 says whether its native library loaded; later stable-ABI releases do not.
        flag = getattr(getattr(mod, "_extension", None), "_IS_TORCHAUDIO_EXT_AVAILABLE", None)
        if flag is not None:
            info["ops"] = {"ok": True, "value": bool(flag)}
    return info

def main():
    want = json.loads(sys.argv[1])
    out = {"python": sys.version.split()[0], "executable": sys.executable, "cwd": os.getcwd(),
           "binaries": {d: attempt(lambda d=d: binaries(d)) for d in want["dists"]}}
    try:
        import torch
    except BaseException as exc:
        out["torch"] = {"import_error": f"{type(exc).__name__}: {exc}"[:4000]}
        return out
    t = {"version": torch.__version__, "file": torch.__file__, "cuda": torch.version.cuda,
         "git_version": getattr(torch.version, "git_version", None),
         "arch_flags": attempt(lambda: arch_flags(torch)),
         "cudnn": attempt(torch.backends.cudnn.version),
         "mkl": attempt(torch.backends.mkl.is_available),
         "mkldnn": attempt(torch.backends.mkldnn.is_available),
         "magma": attempt(lambda: bool(torch.cuda.has_magma)),
         "cxx11_abi": attempt(torch.compiled_with_cxx11_abi),
         "settings": attempt(lambda: settings(torch.__config__.show())),
         "svd_cpu": attempt(lambda: float(torch.linalg.svd(torch.randn(4, 4)).S.sum()) > 0),
         "cuda_available": attempt(torch.cuda.is_available)}
    gpu = t["cuda_available"].get("value") is True
    t["devices"] = [list(torch.cuda.get_device_capability(i)) + [torch.cuda.get_device_name(i)]
                    for i in range(torch.cuda.device_count())] if gpu else []
    out["torch"] = t
    out["companions"] = {n: attempt(lambda n=n: companion(torch, n)) for n in want["companions"]}
    vision = out["companions"].get("torchvision", {}).get("ok", False)
    if want["smoke"] and gpu:
        out["smoke"] = attempt(lambda: gpu_smoke(torch, vision))
    return out

print("TORCHBUILD-PROBE:" + json.dumps(main(), default=str), flush=True)
