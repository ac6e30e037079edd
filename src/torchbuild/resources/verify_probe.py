"""Probe run by ``torchbuild verify`` inside the throwaway env (``python -I verify_probe.py JSON``).

Standard library and the wheels under test only: it must never import torchbuild.
"""
import base64
import importlib
import importlib.metadata as md
import json
import os
import struct
import sys
import tempfile
import zlib

# An 8x8 RGB gradient (pixel (x, y) = (32x, 32y, 128)), JPEG quality 95 without chroma
# subsampling (decodes within 3 of the pixels), written by Pillow: a file
# torchvision did not encode itself.
JPEG_8X8 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYG"
    "CAsICQoKCgoKBggLDAsKDAkKCgr/2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoK"
    "CgoKCgoKCgoKCgoKCgoKCgoKCgr/wAARCAAIAAgDAREAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcI"
    "CQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRol"
    "JicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ip"
    "qrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAA"
    "AAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLR"
    "ChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaX"
    "mJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEA"
    "PwDhv2Uf+CVP/Ht/xTfp/wAsq+g4x8Yfi/efiZfRt8ev4P73t1P/2Q==")


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

def cusparselt(torch):
    """torch.backends.cusparselt (torch >= 2.1) reads torch._C._has_cusparselt."""
    backend = getattr(torch.backends, "cusparselt", None)
    if backend is None:
        raise RuntimeError("this torch has no torch.backends.cusparselt")
    return bool(backend.is_available())

def cufile(torch):
    """USE_CUFILE compiles torch._C._gds_register_buffer (torch/csrc/cuda/GdsFile.cpp); without
    it torch/cuda/gds.py (torch >= 2.5) puts a Python stand-in there that raises when called."""
    importlib.import_module("torch.cuda.gds")   # the module that installs the stand-in
    fn = getattr(torch._C, "_gds_register_buffer", None)
    if fn is None:
        raise RuntimeError("this torch has no torch.cuda.gds")
    return type(fn).__name__ == "builtin_function_or_method"

def loaded_library(stem):
    """Is lib<stem>.so mapped into this process? torch exposes no cuDSS check of its own, but
    libtorch_cuda.so links it (USE_CUDSS) and the loader maps it at `import torch`."""
    with open("/proc/self/maps") as fh:
        return any(f"/lib{stem}.so" in line for line in fh)

def gradient():
    return [[(32 * x, 32 * y, 128) for x in range(8)] for y in range(8)]

def png_bytes(rows):
    """A PNG written with zlib alone (8-bit RGB), so decoding it proves libpng, not our encoder."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + bytes(v for px in row for v in px) for row in rows)
    head = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))

def as_rows(img):
    return [[tuple(int(img[c, y, x]) for c in range(3)) for x in range(img.shape[2])]
            for y in range(img.shape[1])]

def close(a, b, tol):
    return all(abs(p - q) <= tol for ra, rb in zip(a, b) for pa, pb in zip(ra, rb)
               for p, q in zip(pa, pb))

def codecs(io):
    """Decode a PNG and a JPEG written to disk here, encode them back, decode again."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        png, jpg = os.path.join(tmp, "t.png"), os.path.join(tmp, "t.jpg")
        with open(png, "wb") as fh:
            fh.write(png_bytes(gradient()))
        with open(jpg, "wb") as fh:
            fh.write(base64.b64decode(JPEG_8X8))

        def png_round():
            img = io.decode_png(io.read_file(png))
            again = io.decode_png(io.encode_png(img))
            return as_rows(img) == gradient() and as_rows(again) == gradient()

        def jpeg_round():
            img = io.decode_jpeg(io.read_file(jpg))
            again = io.decode_jpeg(io.encode_jpeg(img, quality=95))
            return (tuple(img.shape) == (3, 8, 8) and close(as_rows(img), gradient(), 16)
                    and close(as_rows(again), gradient(), 24))
        out["png"] = attempt(png_round)
        out["jpeg"] = attempt(jpeg_round)
    return out

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
    # A small solve on the device: MAGMA (or cuSOLVER) behind torch.linalg, checked on the CPU.
    g = torch.Generator().manual_seed(0)
    m = torch.randn(64, 64, generator=g, dtype=torch.float64) + 64 * torch.eye(64,
                                                                               dtype=torch.float64)
    rhs = torch.randn(64, 3, generator=g, dtype=torch.float64)
    res["linalg solve"] = attempt(lambda: bool(torch.allclose(
        m @ torch.linalg.solve(m.to(dev), rhs.to(dev)).cpu(), rhs, atol=1e-8)))
    if vision:
        b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        s = torch.tensor([0.9, 0.8, 0.7])
        res["nms"] = attempt(lambda: torch.ops.torchvision.nms(b.to(dev), s.to(dev), 0.5)
                             .cpu().tolist() == [0, 2])
        res["nvjpeg decode"] = attempt(lambda: nvjpeg(torch))
    torch.cuda.synchronize()
    return res

def nvjpeg(torch):
    io = importlib.import_module("torchvision.io")
    data = torch.frombuffer(bytearray(base64.b64decode(JPEG_8X8)), dtype=torch.uint8)
    img = io.decode_jpeg(data, device="cuda").cpu()
    return tuple(img.shape) == (3, 8, 8) and close(as_rows(img), gradient(), 16)

def companion(torch, name):
    mod = importlib.import_module(name)
    info = {"version": getattr(mod, "__version__", None), "file": mod.__file__,
            "requires": [r for r in (md.requires(name) or [])]}
    if name == "torchvision":
        b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        s = torch.tensor([0.9, 0.8, 0.7])
        info["ops"] = attempt(lambda: torch.ops.torchvision.nms(b, s, 0.5).tolist() == [0, 2])
        info["cuda"] = attempt(lambda: mod.version.cuda)
        info["codecs"] = attempt(lambda: codecs(importlib.import_module("torchvision.io")))
    elif name == "torchaudio":
        # <= 2.8 says whether its native library loaded; later stable-ABI releases do not.
        flag = getattr(getattr(mod, "_extension", None), "_IS_TORCHAUDIO_EXT_AVAILABLE", None)
        if flag is not None:
            info["ops"] = {"ok": True, "value": bool(flag)}
    return info

def top_level(dist):
    text = md.distribution(dist).read_text("top_level.txt") or ""
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return [n for n in names if not n.startswith("_")] or [dist.replace("-", "_")]

def smoke_torch_scatter(torch, gpu):
    # scatter_add against plain torch's index_add_, on the CPU and (when present) the GPU.
    torch_scatter = importlib.import_module("torch_scatter")
    src = torch.randn(10, 6)
    index = torch.tensor([0, 1, 0, 1, 2, 1, 0, 2, 2, 1])
    ref = torch.zeros(3, 6).index_add_(0, index, src)
    out = {}
    for dev in ["cpu"] + (["cuda"] if gpu else []):
        got = torch_scatter.scatter_add(src.to(dev), index.to(dev), dim=0).cpu()
        out[dev] = bool(torch.allclose(got, ref, atol=1e-5))
    return out

def smoke_causal_conv1d(torch):
    # The package's own reference formula (causal_conv1d_interface.causal_conv1d_ref).
    import torch.nn.functional as F
    causal_conv1d_fn = importlib.import_module("causal_conv1d").causal_conv1d_fn
    x, w, b = torch.randn(2, 64, 256), torch.randn(64, 4), torch.randn(64)
    ref = F.silu(F.conv1d(x, w.unsqueeze(1), b, padding=3, groups=64)[..., :256])
    got = causal_conv1d_fn(x.cuda(), w.cuda(), b.cuda(), activation="silu").cpu()
    return {"cuda": bool(torch.allclose(got, ref, rtol=1e-3, atol=1e-3))}

def smoke_flash_attn(torch):
    import torch.nn.functional as F
    flash_attn_func = importlib.import_module("flash_attn").flash_attn_func
    q, k, v = (torch.randn(2, 128, 4, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    got = flash_attn_func(q, k, v, causal=True)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         is_causal=True).transpose(1, 2)
    return {"cuda": bool(torch.allclose(got.float(), ref.float(), atol=2e-2))}

# name -> (test, GPU only); the GPU-only ones take torch alone.
SMOKES = {"torch_scatter": (smoke_torch_scatter, False),
          "causal_conv1d": (smoke_causal_conv1d, True), "flash_attn": (smoke_flash_attn, True)}

def extra(torch, spec, gpu):
    dist = spec["dist"]
    info = {"version": md.version(dist), "requires": list(md.requires(dist) or []),
            "imports": {}}
    for name in spec.get("imports") or top_level(dist):
        info["imports"][name] = attempt(lambda name=name: bool(importlib.import_module(name)))
    smoke, needs_gpu = SMOKES.get(spec.get("smoke") or "", (None, False))
    if smoke is not None and (gpu or not needs_gpu):
        info["smoke"] = attempt(lambda: smoke(torch) if needs_gpu else smoke(torch, gpu))
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
         "cusparselt": attempt(lambda: cusparselt(torch)),
         "cufile": attempt(lambda: cufile(torch)),
         "cudss": attempt(lambda: loaded_library("cudss")),
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
    out["extras"] = {e["dist"]: attempt(lambda e=e: extra(torch, e, gpu and want["smoke"]))
                     for e in want.get("extras", [])}
    return out

if __name__ == "__main__":   # run as a script; tests import its helpers
    print("TORCHBUILD-PROBE:" + json.dumps(main(), default=str), flush=True)
