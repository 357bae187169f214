"""Device paths that heartbeats report: a fake /dev of regular files, and the real one.

Making device nodes needs root and mknod, so the fake layout uses regular
files and passes a check for regular files in place of the device check.
"""

import os
import stat
from pathlib import Path

import pytest

from node_agent.devices import list_devices


def list_fake_devices(root: Path) -> list[str]:
    return list_devices(root, is_device=stat.S_ISREG)


@pytest.fixture
def fake_dev(tmp_path: Path) -> Path:
    """A /dev layout in which regular files take the place of device nodes."""
    root = tmp_path / "dev"
    (root / "dri" / "by-path").mkdir(parents=True)
    (root / "pts").mkdir()
    for name in ("null", "zero", "davinci0", "rtc0", "dri/renderD128", "pts/0"):
        (root / name).touch()
    (tmp_path / "outside").touch()
    os.symlink("../card0", root / "dri" / "by-path" / "pci-card")
    os.symlink("rtc0", root / "rtc")
    os.symlink("/proc/self/fd/0", root / "stdin")
    os.symlink("/proc/self/fd", root / "fd")
    os.symlink("missing", root / "broken")
    os.symlink("../outside", root / "escape")
    os.symlink("rtc", root / "rtc-alias")

    return root


def test_fake_layout_devices(fake_dev):
    assert list_fake_devices(fake_dev) == [
        "/dev/davinci0",
        "/dev/dri/renderD128",
        "/dev/null",
        "/dev/rtc",
        "/dev/rtc0",
        "/dev/zero",
    ]


def test_absolute_symlinks_left_out(fake_dev):
    devices = list_fake_devices(fake_dev)

    assert "/dev/stdin" not in devices
    assert "/dev/fd" not in devices


def test_unusable_symlinks_left_out(fake_dev):
    devices = list_fake_devices(fake_dev)

    assert "/dev/escape" not in devices
    assert "/dev/broken" not in devices
    assert "/dev/rtc-alias" not in devices


def test_other_subfolders_not_scanned(fake_dev):
    devices = list_fake_devices(fake_dev)

    assert "/dev/pts/0" not in devices
    assert "/dev/pts" not in devices
    assert "/dev/dri/by-path/pci-card" not in devices


def test_missing_dri_folder(tmp_path):
    (tmp_path / "null").touch()

    assert list_fake_devices(tmp_path) == ["/dev/null"]


def test_dri_file_not_folder(tmp_path):
    (tmp_path / "dri").touch()

    assert list_fake_devices(tmp_path) == ["/dev/dri"]


def test_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_devices(tmp_path / "missing")


def test_regular_files_are_no_devices(fake_dev):
    assert list_devices(fake_dev) == []


def test_real_dev_lists_null():
    devices = list_devices()

    assert "/dev/null" in devices
    assert "/dev/zero" in devices
    assert "/dev/stdin" not in devices
    assert "/dev/pts" not in devices
    assert devices == sorted(devices)
    assert len(devices) == len(set(devices))
