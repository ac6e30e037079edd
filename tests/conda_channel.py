"""A tiny, real conda channel for tests: packages written by conda-package-handling, indexed by
rattler, served from disk (``file://``) and over HTTP on 127.0.0.1.

The packages mimic the layout of the real conda-forge ones torchbuild cares about (a compiler whose
``activate.d`` script exports ``CC``/``CXX``/``LDFLAGS``, an ``nvcc`` with headers under
``targets/x86_64-linux``, a library with a text prefix placeholder, a noarch:python package), but
each is a few hundred bytes, so building and indexing the whole channel takes well under a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
# Fixed timestamps keep package bytes (and so their hashes) identical between runs.
TIMESTAMP_MS = 1_700_000_000_000
MTIME = 1_700_000_000


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    files: dict[str, str]
    depends: tuple[str, ...] = ()
    build: str = "h0_0"
    noarch: str | None = None  # None | "generic" | "python"
    executables: tuple[str, ...] = ()
    fmt: str = ".conda"  # or ".tar.bz2"

    @property
    def subdir(self) -> str:
        return "noarch" if self.noarch else "linux-64"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}{self.fmt}"


def _sh(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


GXX_ACTIVATE = """\
export CC="${CONDA_PREFIX}/bin/x86_64-test-linux-gnu-cc"
export CXX="${CONDA_PREFIX}/bin/x86_64-test-linux-gnu-c++"
export LDFLAGS="-Wl,-O2 -Wl,--as-needed -Wl,-rpath,${CONDA_PREFIX}/lib"
export TEST_GXX_ACTIVATED=1
"""

PACKAGES: tuple[Pkg, ...] = (
    Pkg("libtest", "1.0", {"lib/libtest.cfg": f"prefix={PLACEHOLDER}\nversion=1.0\n"}),
    Pkg("libtest", "1.1", {"lib/libtest.cfg": f"prefix={PLACEHOLDER}\nversion=1.1\n"}),
    Pkg("cmake-test", "3.29.0", {"bin/cmake-test": _sh('echo "cmake-test 3.29.0"')},
        depends=("libtest 1.0.*",), executables=("bin/cmake-test",)),
    Pkg("cmake-test", "3.30.0", {"bin/cmake-test": _sh('echo "cmake-test 3.30.0"')},
        depends=("libtest >=1.1",), executables=("bin/cmake-test",)),
    Pkg("ninja-test", "1.12.1", {"bin/ninja-test": _sh('echo "ninja-test 1.12.1"')},
        build="0", noarch="generic", executables=("bin/ninja-test",), fmt=".tar.bz2"),
    Pkg("mkl-test", "2024.2", {"include/mkl-test.h": "#define MKL_TEST 1\n"},
        depends=("libtest",)),
    Pkg("python", "3.11.7", {"bin/python3.11": _sh('echo "fake python 3.11.7"')},
        build="h0_0_cpython", executables=("bin/python3.11",)),
    Pkg("typing-ext-test", "4.12.0",
        {"site-packages/typing_ext_test/__init__.py": "VERSION = '4.12.0'\n"},
        build="pyh0_0", noarch="python", depends=("python >=3.8",)),
    Pkg("gxx-test", "13.2.0",
        {"bin/x86_64-test-linux-gnu-c++": _sh('echo "c++ (test) 13.2.0"'),
         "bin/x86_64-test-linux-gnu-cc": _sh('echo "cc (test) 13.2.0"'),
         "etc/conda/activate.d/activate-gxx-test.sh": GXX_ACTIVATE},
        executables=("bin/x86_64-test-linux-gnu-c++", "bin/x86_64-test-linux-gnu-cc")),
    Pkg("cuda-nvcc-test", "12.8.93",
        {"bin/nvcc": _sh('echo "Cuda compilation tools, release 12.8, V12.8.93"'),
         "targets/x86_64-linux/include/cuda_runtime.h": "#define CUDART_VERSION 12080\n",
         "targets/x86_64-linux/lib/libcudart.so.12": "not really a library\n"},
        depends=("__cuda >=12",), executables=("bin/nvcc",)),
    # Needs a virtual package that no machine has: the readable-solver-error case.
    Pkg("needs-gpu-test", "1.0", {"share/needs-gpu.txt": "x\n"}, depends=("__cuda >=99",)),
)


LIBPNG_CONFIG = f"""#!/bin/sh
# stand-in for libpng's libpng-config: the answers torchvision's find_libpng() asks for
case "$1" in
  --version) echo 1.6.43 ;;
  --I_opts) echo "-I{PLACEHOLDER}/include/libpng16" ;;
  --libdir) echo "{PLACEHOLDER}/lib" ;;
esac
"""

# conda-forge's file layout of the packages a PyTorch packager's env adds (headers and libraries
# where the real packages put them: CUDA pieces under targets/x86_64-linux, the rest in include/
# and lib/), so activation and torchvision's lookups meet the same tree as with conda-forge.
LAYOUTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "libjpeg-turbo": ({"include/jpeglib.h": "/* jpeg */\n", "lib/libjpeg.so.8": "elf\n"}, ()),
    "libpng": ({"include/libpng16/png.h": "/* png */\n", "include/png.h": "/* png */\n",
                "lib/libpng16.so.16": "elf\n", "bin/libpng-config": LIBPNG_CONFIG},
               ("bin/libpng-config",)),
    "libwebp": ({"include/webp/decode.h": "/* webp */\n", "lib/libwebp.so.7": "elf\n"}, ()),
    "libnvjpeg-dev": ({"targets/x86_64-linux/include/nvjpeg.h": "/* nvjpeg */\n",
                       "targets/x86_64-linux/lib/libnvjpeg.so": "elf\n"}, ()),
    "libmagma-devel": ({"include/magma.h": "/* magma */\n", "include/magma_v2.h": "/* v2 */\n",
                        "lib/libmagma.so": "elf\n", "lib/pkgconfig/magma.pc": "Name: magma\n"}, ()),
    "magma": ({"include/magma.h": "/* magma */\n", "include/magma_v2.h": "/* v2 */\n",
               "lib/libmagma.so": "elf\n"}, ()),
    "nccl": ({"include/nccl.h": "/* nccl */\n", "lib/libnccl.so": "elf\n"}, ()),
    "cusparselt": ({"include/cusparseLt.h": "/* cusparselt */\n",
                    "lib/libcusparseLt.so": "elf\n"}, ()),
    "libcudss-dev": ({"include/cudss.h": "/* cudss */\n", "lib/libcudss.so": "elf\n"}, ()),
    "cuda-nvcc": ({"bin/nvcc": '#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.88"\n',
                   "targets/x86_64-linux/include/cuda_runtime.h": "#define CUDART_VERSION 13000\n"},
                  ("bin/nvcc",)),
}


def stand_in(name: str, version: str, depends: tuple[str, ...] = ()) -> Pkg:
    """A stand-in named like the conda-forge package, with its real layout where LAYOUTS has it."""
    files, exe = LAYOUTS.get(name, ({f"share/{name}/README": f"stand-in for {name}\n"}, ()))
    return Pkg(name, version, dict(files), depends=depends, executables=exe)


def _paths_entry(rel: str, data: bytes) -> dict[str, object]:
    entry: dict[str, object] = {
        "_path": rel, "path_type": "hardlink",
        "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data),
    }
    if PLACEHOLDER.encode() in data:
        entry.update(file_mode="text", prefix_placeholder=PLACEHOLDER)
    return entry


def _write(path: Path, text: str, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755 if executable else 0o644)
    os.utime(path, (MTIME, MTIME))


def _index_json(pkg: Pkg) -> dict[str, object]:
    index: dict[str, object] = {
        "name": pkg.name, "version": pkg.version, "build": pkg.build,
        "build_number": 0, "depends": list(pkg.depends), "license": "BSD-3-Clause",
        "subdir": pkg.subdir, "timestamp": TIMESTAMP_MS,
    }
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    else:
        index.update(arch="x86_64", platform="linux")
    return index


def _stage(pkg: Pkg, staging: Path) -> list[str]:
    """Lay out the payload and the info/ metadata of one package; return the archive's file list."""
    payload: list[str] = []
    paths: list[dict[str, object]] = []
    has_prefix: list[str] = []
    for rel, text in sorted(pkg.files.items()):
        _write(staging / rel, text, executable=rel in pkg.executables)
        payload.append(rel)
        entry = _paths_entry(rel, text.encode())
        paths.append(entry)
        if "prefix_placeholder" in entry:
            has_prefix.append(f"{PLACEHOLDER} text {rel}")
    info = staging / "info"
    _write(info / "index.json", json.dumps(_index_json(pkg), indent=1, sort_keys=True))
    _write(info / "paths.json", json.dumps({"paths": paths, "paths_version": 1}, indent=1))
    _write(info / "files", "\n".join(payload) + "\n")
    _write(info / "about.json", json.dumps({"summary": f"tiny test package {pkg.name}"}))
    meta = ["info/index.json", "info/paths.json", "info/files", "info/about.json"]
    if has_prefix:
        _write(info / "has_prefix", "\n".join(has_prefix) + "\n")
        meta.append("info/has_prefix")
    return meta + payload


def build_package(pkg: Pkg, channel: Path, staging_root: Path) -> Path:
    from conda_package_handling import api as cph

    staging = staging_root / f"{pkg.name}-{pkg.version}-{pkg.build}"
    files = _stage(pkg, staging)
    out_dir = (channel / pkg.subdir).resolve()  # cph chdirs into staging: must be absolute
    out_dir.mkdir(parents=True, exist_ok=True)
    cph.create(str(staging), files, pkg.filename, out_folder=str(out_dir))
    return out_dir / pkg.filename


def index_channel(channel: Path) -> None:
    from rattler.index import index_fs

    (channel / "noarch").mkdir(parents=True, exist_ok=True)  # rattler needs it, even empty
    asyncio.run(index_fs(channel.resolve(), write_zst=False, write_shards=False, force=True))
    shutil.rmtree(channel / ".tmp", ignore_errors=True)


def build_channel(channel: Path, packages: tuple[Pkg, ...] = PACKAGES) -> dict[str, Path]:
    """Build and index the channel; return {filename: archive path}."""
    staging_root = channel.parent / f"{channel.name}-staging"
    built = {pkg.filename: build_package(pkg, channel, staging_root) for pkg in packages}
    index_channel(channel)
    shutil.rmtree(staging_root, ignore_errors=True)
    return built


def find_archive(channel: Path, name: str, version: str) -> Path:
    hits = [p for p in channel.glob(f"*/{name}-{version}-*") if p.name.endswith(
        (".conda", ".tar.bz2"))]
    if len(hits) != 1:
        msg = f"expected one archive of {name} {version} in {channel}, found {hits}"
        raise LookupError(msg)
    return hits[0]


def copy_channel(src: Path, dst: Path) -> Path:
    """A private copy a test may tamper with without disturbing the session channel."""
    shutil.copytree(src, dst)
    return dst


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class HttpChannel:
    url: str
    root: Path
    stall: set[str] = field(default_factory=set)  # path suffixes whose GET hangs until release
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)


def _handler(state: HttpChannel) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(state.root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if any(self.path.endswith(s) for s in state.stall):
                # Simulates a download that never finishes, so the client can be killed mid-install.
                state.release.wait(timeout=120)
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[HttpChannel]:
    """Serve ``root`` on 127.0.0.1 (loopback only) on a free port, in a daemon thread."""
    state = HttpChannel(url="", root=root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":  # manual use: python tests/conda_channel.py /tmp/chan
    import sys

    t0 = time.monotonic()
    out = build_channel(Path(sys.argv[1]))
    print(f"built {len(out)} packages in {time.monotonic() - t0:.3f}s")
