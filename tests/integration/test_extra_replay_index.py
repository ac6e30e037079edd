"""Replay of an unpinned PyPI ``--extra`` against a real package index that moves on.

The parts are real: a PEP 503 simple index on disk (``file://``, the layout pip reads for
``PIP_INDEX_URL=file:///...``) made here, serving sdists of the cppext fixture (a real C++ torch
operator, torch.utils.cpp_extension) made with ``setup.py sdist``; the pipeline builds
``--extra tbext`` (no version) against the shared torch 2.13.0 CPU venv. Then 0.2.0 is published
and ``replay`` must rebuild 0.1.0 - the recorded version and sha256 - not the index's newest; a
tampered 0.1.0 on the index is refused with the hash error (exit 10) before anything is built.
About 2 minutes on 2 cores (two compiles of one C++ file).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env
from gitrepos import PROJECTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
INTEGRITY_EXIT = 10   # errors.IntegrityError.exit_code


def _sdist(torch_python: Path, version: str, tmp: Path) -> Path:
    """A real sdist of the cppext fixture at ``version`` (its setup.py's version made literal)."""
    tree = tmp / f"tbext-src-{version}"
    shutil.copytree(PROJECTS / "cppext", tree)
    setup = tree / "setup.py"
    text = setup.read_text()
    assert 'os.environ.get("BUILD_VERSION", "0.0.0")' in text
    setup.write_text(text.replace('os.environ.get("BUILD_VERSION", "0.0.0")', repr(version)))
    subprocess.run([str(torch_python), "setup.py", "-q", "sdist", "--dist-dir", str(tmp / "out")],
                   cwd=tree, check=True, capture_output=True, text=True, timeout=300)
    return tmp / "out" / f"tbext-{version}.tar.gz"


def _publish(index: Path, sdists: list[Path]) -> None:
    """ROOT/tbext/index.html (PEP 503) linking the files with their #sha256= fragments."""
    files = index / "files"
    files.mkdir(parents=True, exist_ok=True)
    links = []
    for sdist in sdists:
        shutil.copy2(sdist, files / sdist.name)
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        links.append(f'<a href="../files/{sdist.name}#sha256={digest}">{sdist.name}</a><br/>')
    (index / "tbext").mkdir(exist_ok=True)
    (index / "tbext" / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (index / "index.html").write_text('<html><body><a href="tbext/">tbext</a></body></html>\n')


def _run(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchbuild", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def _wheels(dist: Path) -> list[list[str]]:
    return sorted(w.name.split("-")[:2] for w in dist.glob("*.whl"))


def test_replay_rebuilds_the_recorded_sdist_not_the_newest(torch_venv: Path, tmp_path: Path):
    v1, v2 = (_sdist(torch_venv, v, tmp_path) for v in ("0.1.0", "0.2.0"))
    v1_sha = hashlib.sha256(v1.read_bytes()).hexdigest()
    index = tmp_path / "index"
    _publish(index, [v1])
    # The way a user points pip (and so torchbuild's resolver) at a mirror.
    env = {**base_env(tmp_path), "PIP_INDEX_URL": f"file://{index}"}
    build = ["--torch", "2.13.0", "--cpu", "--env", "existing", "--python", str(torch_venv),
             "--torch-from-env", "--vision", "none", "--audio", "none", "--extra", "tbext",
             "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
             "--dist", str(tmp_path / "dist")]
    first = _run(*build, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-3000:]
    assert _wheels(tmp_path / "dist") == [["tbext", "0.1.0+cpu"]]
    manifest_path = tmp_path / "dist" / "torchbuild-manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["sources"]["tbext"]["commit"] == f"sha256:{v1_sha}"
    assert manifest["options"]["extra"]["value"] == ["tbext"]   # recorded unpinned

    _publish(index, [v1, v2])   # the index moves on
    drifted = _run(*build, "--dry-run", env=env, cwd=tmp_path)
    assert drifted.returncode == 0, drifted.stderr[-2000:]
    assert "extra tbext 0.2.0 -> 0.2.0+cpu" in drifted.stdout   # what a plain re-run would build

    # --trust-manifest: the recorded --python is this test's venv, not the user's own setting.
    replay = _run("replay", str(manifest_path), "--trust-manifest", env=env, cwd=tmp_path)
    out = replay.stdout + replay.stderr
    assert replay.returncode == 0, out[-5000:]
    replayed = tmp_path / "dist" / "replay"
    assert _wheels(replayed) == [["tbext", "0.1.0+cpu"]]
    again = json.loads((replayed / "torchbuild-manifest.json").read_text())
    assert again["sources"]["tbext"]["commit"] == f"sha256:{v1_sha}"
    assert again["options"]["extra"]["value"] == ["tbext==0.1.0"]
    # What replay compares: each recorded wheel by sha256, then member by member. Say which.
    same = "the replayed wheels have the recorded contents" in out
    reasons = [ln.strip() for ln in out.splitlines() if ".whl: " in ln]
    assert same or reasons, out[-3000:]
    print("\nreplay compare:", "identical" if same else reasons)

    # A tampered 0.1.0 on the index (the listing still says the recorded hash): a fresh cache and
    # work dir must download it, and the download is refused before anything is built.
    tampered = index / "files" / v1.name
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    bad = _run("replay", str(manifest_path), "--trust-manifest",
               "--cache-dir", str(tmp_path / "cache2"), "--work-dir", str(tmp_path / "work2"),
               "--dist", str(tmp_path / "dist-bad"), env=env, cwd=tmp_path)
    assert bad.returncode == INTEGRITY_EXIT, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert f"is not the index's {v1_sha}" in bad.stderr, bad.stderr[-2000:]
    assert "fix:" in bad.stderr
    assert not list((tmp_path / "dist-bad").glob("*.whl"))

    # Republished with a listing that matches the new file: the recorded sha256 still decides.
    republished = tmp_path / "out-bad" / v1.name
    republished.parent.mkdir()
    shutil.copy2(tampered, republished)
    _publish(index, [republished, v2])
    moved = _run("replay", str(manifest_path), "--trust-manifest",
                 "--cache-dir", str(tmp_path / "cache3"), "--work-dir", str(tmp_path / "work3"),
                 "--dist", str(tmp_path / "dist-moved"), env=env, cwd=tmp_path)
    assert moved.returncode == INTEGRITY_EXIT, moved.stdout[-3000:] + moved.stderr[-3000:]
    assert f"the recorded build used sha256:{v1_sha}" in moved.stderr, moved.stderr[-2000:]


def test_the_index_named_in_pip_conf_is_the_one_used(torch_venv: Path, tmp_path: Path):
    """A mirror set in pip's config file (index-url, no PIP_INDEX_URL) is where an ``--extra``
    is resolved, as pip would: ``fetch --dry-run`` names the file the mirror has, with its hash."""
    sdist = tmp_path / "out" / "tbext-0.3.0.tar.gz"
    sdist.parent.mkdir()
    sdist.write_bytes(b"only the mirror has this release")
    index = tmp_path / "index"
    _publish(index, [sdist])
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nindex-url = file://{index}\n")
    env = {k: v for k, v in base_env(tmp_path).items() if k != "PIP_INDEX_URL"}
    env["PIP_CONFIG_FILE"] = str(conf)
    listed = _run("fetch", "--torch", "2.13.0", "--cpu", "--env", "existing", "--python",
                  str(torch_venv), "--torch-from-env", "--vision", "none", "--audio", "none",
                  "--extra", "tbext", "--cache-dir", str(tmp_path / "cache"), "--dry-run",
                  env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert f"would download tbext-0.3.0.tar.gz (sha256 {digest[:12]})" in listed.stdout
