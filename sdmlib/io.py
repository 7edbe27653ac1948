"""Atomic writes: a reader (or a crash) never sees half a file or half a checkpoint.

A file is written to a temporary name in its own directory and renamed over the target (`os.replace` is atomic on
POSIX within a file system); a directory (a checkpoint) is filled under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def write_atomically(path: str | os.PathLike, write: Callable) -> Path:
    """Call `write(binary_file)` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def save_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, lambda file: file.write(text.encode()))


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON with sorted keys and a trailing newline, written atomically."""
    return save_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_to_builtin) + "\n")


def _to_builtin(value: Any) -> Any:
    if hasattr(value, "tolist"):  # tensors and numpy arrays/scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield temporary
        if path.exists():
            # os.replace cannot rename over a non-empty directory: move the old one aside first.
            stale = path.with_name(f".{path.name}.old")
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(path, stale)
            os.replace(temporary, path)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def save_safetensors(path: str | os.PathLike, tensors: dict) -> Path:
    """A dict of tensors as a safetensors file, written atomically (load with safetensors.torch.load_file)."""
    from safetensors.torch import save

    data = save({name: tensor.contiguous() for name, tensor in tensors.items()})
    return write_atomically(path, lambda file: file.write(data))
