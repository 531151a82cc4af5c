"""The export folder on disk: which ``-o DIR`` may be replaced, a private sibling folder to
write into, and the swap that puts it in place atomically (SPEC §9).

DIR is written as ``.DIR.segcli-tmp-PID`` beside it, then exchanged with the old DIR in one
``renameat2(RENAME_EXCHANGE)`` where Linux offers it, else the old DIR is renamed aside
(``.DIR.segcli-old-PID``) and the new one renamed in. A run killed at any point leaves DIR
as it was (or, between the two renames of the fallback, aside, where the next run puts it
back); only folders with those names, of processes no longer alive, are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from segcli.errors import OutputError, UsageError
from segcli.io import _pid_alive  # the one liveness test of the temp-file cleanup

MANIFEST = "manifest.json"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def written_by_segcli(folder: Path) -> bool:
    """True when ``folder`` holds the manifest of a segcli export."""
    try:
        doc = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "segcli" and doc.get("kind") == "export"


def check_target(out: str, inputs: list[str], *, force: bool) -> Path:
    """Refuse an ``-o`` that holds an input (exit 2), whose folder is missing (73), or that
    is something other than an earlier export (73 unless ``--force``)."""
    target = Path(os.path.abspath(out))
    for item in inputs:
        src = Path(item).resolve()
        if src == target.resolve() or target.resolve() in src.parents:
            raise UsageError(f"-o {out} holds the input {item}: refusing to replace it")
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: folder {target.parent} is not writable")
    if force or not os.path.lexists(target):
        return target
    if target.is_symlink() or not target.is_dir():
        raise OutputError(f"cannot write {out}: it exists and is not a folder",
                          ["choose another -o, or pass --force to replace it"])
    if any(target.iterdir()) and not written_by_segcli(target):
        raise OutputError(f"cannot write {out}: the folder holds files that segcli export did not write "
                          f"(no segcli {MANIFEST})", ["choose another -o, or pass --force to replace the folder"])
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def recover(target: Path) -> None:
    """Undo what a killed run left beside ``target``: put an old DIR set aside back in place
    when DIR is missing, and remove the dead runs' temporary folders."""
    for kind in ("old", "tmp"):
        for stale in sorted(target.parent.glob(f".{target.name}.segcli-{kind}-*")):
            pid = stale.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _pid_alive(int(pid)):
                continue
            if kind == "old" and not os.path.lexists(target):
                os.rename(stale, target)
            else:
                _remove(stale)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _put_in_place(tmp: Path, target: Path) -> None:
    """Make ``tmp`` the folder at ``target``; the old one (if any) is removed after."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        _remove(tmp)  # now the old DIR
    else:
        old = target.with_name(f".{target.name}.segcli-old-{os.getpid()}")
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(old, target)
            raise
        _remove(old)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty sibling folder to write into; on success swap it in for ``target``.

    The old ``target`` survives any failure: the swap is the only moment it changes.
    """
    recover(target)
    tmp = target.with_name(f".{target.name}.segcli-tmp-{os.getpid()}")
    try:
        _remove(tmp)
        os.mkdir(tmp)
        yield tmp
        _fsync_dir(tmp)
        _put_in_place(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
