"""Find the labelled dataset folder, or download Caltech-101 when none is at hand."""

from __future__ import annotations

import logging
from pathlib import Path

from imgsearch.ui.services.errors import AppError

log = logging.getLogger(__name__)

CALTECH_SUBPATH = Path("caltech101") / "101_ObjectCategories"


class DatasetUnavailable(AppError, RuntimeError):
    """No folder to train on (none given, none found, the download failed): the message says which."""

    code = "dataset_unavailable"
    status = 404


def candidate_dirs(data_dir: Path, cwd: Path | None = None) -> list[Path]:
    """Where a Caltech-101 copy may already be, most specific first."""
    cwd = cwd or Path.cwd()
    repo = Path(__file__).resolve().parents[2]
    return [
        data_dir / CALTECH_SUBPATH,
        # A copy laid beside the checkout (as on the team's machines and CI); optional for users.
        cwd.parent / "shared" / "data" / CALTECH_SUBPATH,
        repo.parent / "shared" / "data" / CALTECH_SUBPATH,
    ]


def find_dataset(explicit: Path | None, data_dir: Path, download: bool = True) -> Path:
    """The folder of class sub-folders to use: `explicit`, else a known copy, else Caltech-101 downloaded."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise DatasetUnavailable(f"dataset folder not found: {path}")
        return path
    for path in candidate_dirs(Path(data_dir)):
        if path.is_dir() and any(path.iterdir()):
            log.info("using dataset at %s", path)
            return path
    if not download:
        raise DatasetUnavailable(
            "no dataset given and no Caltech-101 copy found; pass --data DIR (a folder of class sub-folders)"
        )
    return download_caltech101(Path(data_dir))


def download_caltech101(data_dir: Path) -> Path:
    """Download and unpack Caltech-101 with torchvision into data_dir/caltech101/."""
    from torchvision.datasets import Caltech101

    log.warning("no dataset found: downloading Caltech-101 (about 130 MB) into %s", data_dir)
    try:
        # torchvision lays it out as <root>/caltech101/101_ObjectCategories/<class>/image_*.jpg
        Caltech101(root=str(data_dir), target_type="category", download=True)
    except Exception as exc:  # network, checksum and archive errors all end the same way for the user
        raise DatasetUnavailable(
            f"could not download Caltech-101 ({type(exc).__name__}: {exc}). Download it from "
            "doi:10.22002/D1.20086, unpack it, and pass --data path/to/101_ObjectCategories"
        ) from exc
    path = data_dir / CALTECH_SUBPATH
    if not path.is_dir():
        raise DatasetUnavailable(f"download finished but {path} is missing; pass --data explicitly")
    return path
