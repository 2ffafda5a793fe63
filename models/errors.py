"""What models/ raises about data, and the path type it takes."""

from __future__ import annotations

import os
from typing import Union

Pathish = Union[str, "os.PathLike[str]"]


class DatasetNotFound(FileNotFoundError):
    """The data of a dataset is missing or unreadable; the message says where and what."""


class BadData(ValueError):
    """The data of a dataset is there but cannot be used as it is (images of mixed sizes,
    a file's missing keys or bad labels); the message names the file and what to change."""
