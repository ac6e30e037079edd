"""Locks: a second holder times out with the first holder named; a released lock is free again.

flock locks belong to an open file description, so two ``hold`` calls in one process contend
exactly as two processes would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchbuild.errors import LockTimeoutError
from torchbuild.locks import claim, hold, mirror_lock_path, work_dir_lock_path


def test_second_holder_times_out_naming_the_first(tmp_path: Path) -> None:
    lock = mirror_lock_path(tmp_path, "pytorch")
    with (hold(lock, purpose="mirror pytorch"), pytest.raises(LockTimeoutError) as err,
          hold(lock, purpose="mirror pytorch", timeout=0.2)):
        pass
    assert f"pid {os.getpid()}" in err.value.message
    assert "mirror pytorch is in use" in err.value.message
    assert err.value.fix
    assert err.value.exit_code == 17


def test_lock_is_free_after_release_and_owner_file_removed(tmp_path: Path) -> None:
    lock = work_dir_lock_path(tmp_path)
    with hold(lock, purpose="work dir"):
        assert lock.with_name(lock.name + ".owner").exists()
    assert not lock.with_name(lock.name + ".owner").exists()
    with hold(lock, purpose="work dir", timeout=0.2):
        pass


def test_different_mirrors_do_not_contend(tmp_path: Path) -> None:
    first, second = mirror_lock_path(tmp_path, "pytorch"), mirror_lock_path(tmp_path, "vision")
    assert first != second
    # hold() raises after its timeout when the lock is taken: the second is got while the
    # first is held, and both lock files exist for the other holders to see.
    with hold(first, purpose="a"), hold(second, purpose="b", timeout=0.2):
        assert first.exists() and second.exists()


def test_lock_released_when_the_block_raises(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with pytest.raises(RuntimeError), hold(lock, purpose="x"):
        raise RuntimeError
    with hold(lock, purpose="x", timeout=0.2):
        pass


def test_claim_is_kept_and_reentrant(tmp_path: Path) -> None:
    lock = work_dir_lock_path(tmp_path)
    claim(lock, purpose="work dir", timeout=0.2)
    claim(lock, purpose="work dir", timeout=0.2)  # the same process again: no wait, no error
    # anyone else (another open file description) is refused
    with pytest.raises(LockTimeoutError), hold(lock, purpose="work dir", timeout=0.2):
        pass
