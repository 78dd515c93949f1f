"""Run a locally built image the way a restricted Pod runs it, without a container engine.

The images are built with buildah (vfs storage, chroot isolation; ../shared/images/).
``buildah run`` cannot make the root filesystem read-only, so a :class:`Container` takes
the image's root filesystem from ``buildah from`` + ``buildah mount`` and starts the
image's process itself: in private mount and PID namespaces (``unshare``), with the
root filesystem bind-mounted read-only, a fresh /proc, a minimal /dev, a tmpfs on /tmp
(the Pod's emptyDir), the caller's bind mounts, the image's environment and working
directory, as the image's numeric ``USER`` (``chroot --userspec``: no capabilities).
A mount point missing from the image is created in the container's root filesystem
before it is mounted read-only, as container runtimes do. The fake kubelet runs Pods
this way too (``FakeKubelet(images=...)``). Needs root on the host (mounts) and ``buildah``; :func:`unavailable` says why not.
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

import audioextract

STORAGE_ENV = {"STORAGE_DRIVER": "vfs"}
# The images `make images` builds (override with $WORKER_IMAGE / $OPERATOR_IMAGE).
WORKER_IMAGE = os.environ.get("WORKER_IMAGE") or f"audio-extract-worker:{audioextract.__version__}"
OPERATOR_IMAGE = (
    os.environ.get("OPERATOR_IMAGE") or f"audio-extract-operator:{audioextract.__version__}"
)
# Runs inside `unshare --mount --pid --fork`: $1 rootfs, $2 an empty directory to mount
# it on, $3 uid:gid, $4 gid, $5 the number N of bind mounts, then N triples "host
# container ro|rw", then the command. Mount points under /dev and /tmp (tmpfs here) are
# made there; a missing one elsewhere is made in the rootfs, as container runtimes do,
# before anything runs.
_LAUNCH = r"""
set -eu
root=$1 mnt=$2 user=$3 group=$4 n=$5; shift 5
mount --make-rprivate /
mount --bind "$root" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t proc -o nosuid,nodev,noexec proc "$mnt/proc"
mount -t tmpfs -o nosuid,noexec,mode=755 tmpfs "$mnt/dev"
for d in null zero random urandom; do
  touch "$mnt/dev/$d"; mount --bind "/dev/$d" "$mnt/dev/$d"
done
ln -s /proc/self/fd "$mnt/dev/fd"
ln -s /proc/self/fd/0 "$mnt/dev/stdin"
ln -s /proc/self/fd/1 "$mnt/dev/stdout"
ln -s /proc/self/fd/2 "$mnt/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$mnt/tmp"
while [ "$n" -gt 0 ]; do
  host=$1 target=$2 mode=$3; shift 3; n=$((n - 1))
  case "$target" in
    /dev/*|/tmp/*) base=$mnt ;;
    *) base=$root ;;
  esac
  if [ ! -e "$mnt$target" ]; then
    if [ -d "$host" ]; then mkdir -p "$base$target"; else
      mkdir -p "$(dirname "$base$target")"; touch "$base$target"; fi
  fi
  mount --bind "$host" "$mnt$target"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$mnt$target"; fi
done
exec chroot --userspec="$user" --groups="$group" "$mnt" "$@"
"""


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run buildah with vfs storage (what ../shared/images/build uses)."""
    return subprocess.run(
        ["buildah", *args],
        env={**os.environ, **STORAGE_ENV},
        capture_output=True,
        text=True,
        check=check,
    )


def unavailable(ref: str) -> str | None:
    """Why ``ref`` cannot be run here (None when it can)."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (see ../shared/images/README.md)"
    if os.geteuid() != 0:
        return "running images needs root (mount namespaces and bind mounts)"
    if shutil.which("unshare") is None:
        return "util-linux's unshare is missing"
    if buildah("inspect", "--type", "image", ref, check=False).returncode != 0:
        return f"image {ref} is not built: run `make images IMAGE_BUILD=../shared/images/build`"
    return None


@dataclass(frozen=True)
class FileState:
    """What a change to a file would alter."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    link: str | None


def snapshot(root: Path) -> dict[str, FileState]:
    """Every path under ``root`` (symlinks not followed) with its metadata."""
    out: dict[str, FileState] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            link = str(path.readlink()) if stat.S_ISLNK(st.st_mode) else None
            out[str(path.relative_to(root))] = FileState(
                st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, link
            )
    return out


def diff(before: Mapping[str, FileState], after: Mapping[str, FileState]) -> list[str]:
    """Paths added, removed or changed between two snapshots, sorted."""
    return sorted(
        [f"+{p}" for p in after.keys() - before.keys()]
        + [f"-{p}" for p in before.keys() - after.keys()]
        + [f"~{p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


@dataclass
class Container:
    """One container (a rootfs copy) of an image; many processes can run in it."""

    ref: str
    name: str
    rootfs: Path
    config: dict[str, Any]

    @property
    def user(self) -> str:
        """The image's USER, numeric ``uid:gid``."""
        user = str(self.config.get("User") or "0:0")
        return user if ":" in user else f"{user}:{user}"

    @property
    def env(self) -> dict[str, str]:
        """The image's environment (ENV)."""
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])

    def command(
        self,
        argv: Sequence[str],
        *,
        mountpoint: Path,
        mounts: Mapping[str, Path] | None = None,
        read_only: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        workdir: str | None = None,
    ) -> list[str]:
        """The host command line that runs ``argv`` in this container (see the module doc).

        ``mountpoint`` is an empty host directory to mount the root filesystem on;
        ``mounts`` maps container paths to host paths, those in ``read_only`` mounted
        read-only; ``env`` goes over the image's; ``user`` (``uid:gid``) and ``workdir``
        default to the image's.
        """
        user = user or self.user
        table = [
            item
            for target, host in (mounts or {}).items()
            for item in (str(Path(host).resolve()), target, "ro" if target in read_only else "rw")
        ]
        full_env = {**self.env, **(env or {})}
        return [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            _LAUNCH,
            "launch",
            str(self.rootfs),
            str(mountpoint),
            user,
            user.split(":")[1],
            str(len(mounts or {})),
            *table,
            "/usr/bin/env",
            "-i",
            "-C",
            workdir or str(self.config.get("WorkingDir") or "/"),
            *(f"{k}={v}" for k, v in full_env.items()),
            *argv,
        ]

    def run(
        self,
        args: Sequence[str] | None = None,
        *,
        entrypoint: Sequence[str] | None = None,
        mounts: Mapping[Path | str, str] | None = None,
        read_only: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ENTRYPOINT + (``args`` or CMD), as ``docker run`` does; never raises on exit codes.

        ``mounts`` maps host paths to container paths; container paths listed in
        ``read_only`` are mounted read-only.
        """
        ep = list(self.config.get("Entrypoint") or []) if entrypoint is None else list(entrypoint)
        cmd = list(self.config.get("Cmd") or []) if args is None else list(args)
        with tempfile.TemporaryDirectory(prefix="ctr-") as mnt:
            argv = self.command(
                ep + cmd,
                mountpoint=Path(mnt),
                mounts={target: Path(host) for host, target in (mounts or {}).items()},
                read_only=read_only,
                env=env,
            )
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def snapshot(self) -> dict[str, FileState]:
        """The container's root filesystem now, for :func:`diff`."""
        return snapshot(self.rootfs)

    @cached_property
    def baseline(self) -> dict[str, FileState]:
        """The root filesystem as first seen (walking it is slow: taken once)."""
        return self.snapshot()


@contextmanager
def container(ref: str) -> Iterator[Container]:
    """A container of image ``ref``, removed afterwards."""
    name = buildah("from", "--pull=never", ref).stdout.strip()
    try:
        rootfs = Path(buildah("mount", name).stdout.strip())
        yield Container(ref, name, rootfs, image_config(ref))
    finally:
        buildah("rm", name, check=False)


def image_config(ref: str) -> dict[str, Any]:
    """The image's OCI config: User, Env, Entrypoint, Cmd, WorkingDir, Labels."""
    info = json.loads(buildah("inspect", "--type", "image", ref).stdout)
    config: dict[str, Any] = info["OCIv1"]["config"]
    return config


def container_or_skip(ref: str) -> Iterator[Container]:
    """Body of a fixture: a container of image ``ref``, or the test skipped saying why."""
    reason = unavailable(ref)
    if reason is not None:
        pytest.skip(f"image tier: {reason}")
    with container(ref) as ctr:
        yield ctr
