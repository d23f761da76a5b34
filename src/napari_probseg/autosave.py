"""Autosave policy: where a session is saved without asking, and what is never overwritten.

Why: the proofreading dock saves after every edit, so a crash loses at most one
correction.  The slot is one file per image name; a file already there that belongs to
another session - or that cannot be read at all - is moved aside under a new name, never
overwritten, because it may hold someone's only copy of their corrections.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .session import Session, SessionError
from .session_file import DAMAGE, SUFFIX, open_npz, save

AUTOSAVE_ENV = "NAPARI_PROBSEG_AUTOSAVE_DIR"


def autosave_dir() -> Path:
    """``$NAPARI_PROBSEG_AUTOSAVE_DIR``, else ``~/.napari-probseg/autosave``."""
    env = os.environ.get(AUTOSAVE_ENV)
    return Path(env) if env else Path.home() / ".napari-probseg" / "autosave"


def autosave_path(image_name: str, folder: str | Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_name).strip("._") or "image"
    return Path(folder or autosave_dir()) / f"{safe}{SUFFIX}"


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.probseg.npz.<pid>.partial`` files whose writer process is gone.

    Why: a save killed with ``kill -9`` leaves its temporary file; the finished file it
    would have replaced is intact, so the leftover is only clutter (and disk space).
    """
    removed = []
    for f in Path(folder).glob(f".*{SUFFIX}.*.partial"):
        pid = f.name[: -len(".partial")].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _owner(path: Path) -> str:
    """Session id stored in ``path``; 'damaged' when the file cannot be read as a session."""
    try:
        with open_npz(path) as z:
            return str(z["session_id"])
    except (SessionError, *DAMAGE):
        return "damaged"


def _free_name(path: Path, tag: str) -> Path:
    """``<stem>.<tag>.probseg.npz``, numbered when taken, so nothing set aside is replaced."""
    base = path.name[: -len(SUFFIX)]
    candidate, n = path.with_name(f"{base}.{tag}{SUFFIX}"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{base}.{tag}-{n}{SUFFIX}")
    return candidate


def autosave(session: Session, folder: str | Path | None = None) -> Path:
    """Save to the autosave slot of the image; another session's autosave there (or a
    damaged file) is moved aside under a name with its id (or 'damaged'), not overwritten."""
    path = autosave_path(session.image_name, folder)
    if path.parent.is_dir():
        remove_stale_partials(path.parent)
    if path.exists():
        other = _owner(path)
        if other != session.session_id:
            os.replace(path, _free_name(path, other[:8]))
    return save(session, path)
