"""Unencrypted channels and mirrors are warned about; the manifest says how packages were
checked (conda-exe's @EXPLICIT list has md5 only)."""

from __future__ import annotations

from torchbuild.plan import plain_http_warnings
from torchbuild.proof.artifacts import package_hash


def test_plain_http_channel_and_mirror_are_named() -> None:
    found = plain_http_warnings(("https://conda.anaconda.org/conda-forge",
                                 "http://mirror.example.invalid/cf"), "git://git.example.invalid")
    assert len(found) == 2
    assert "http://mirror.example.invalid/cf" in found[0] and "https://" in found[0]
    assert "git://git.example.invalid" in found[1]
    assert plain_http_warnings(("https://x",), "file:///srv/git") == []


def test_manifest_records_the_package_hash_kind() -> None:
    assert package_hash("conda") == "sha256"
    assert package_hash("conda-exe").startswith("md5")
    assert package_hash("venv") is None
