"""Image datasets of the paper's experiments (Appendix A), an offline stand-in, and the cached principal axis v̂.

Every dataset `build_dataset` returns yields float32 tensors (3, image_size, image_size) in [-1, 1], images only:
the authors' code feeds the UNet images in [-1, 1] and uses one augmentation, a random horizontal flip
(`augment=True`). The datasets:

| name | source | preparation |
| --- | --- | --- |
| `cifar10`, `cifar100` | torchvision's CIFAR pickles under `data_root` | 32×32 as stored |
| `celeba64` | `img_align_celeba/` JPEGs under `data_root` | centre crop 140×140, resize to image_size |
| `folder` | any folder of images, recursively | resize the shorter side, centre crop |
| `photos` | the RGB photographs shipped inside scikit-image and matplotlib | fixed, seeded crops; offline |

This is the I/O layer: it reads files, decodes images and writes the JSON cache of v̂. The mathematics of v̂ lives in
`sdmlib.pca`, which this module only calls.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .io import save_json
from .pca import principal_axis

DATASETS = ("cifar10", "cifar100", "celeba64", "folder", "photos")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Bump when a preparation recipe changes, so that fingerprints (cache keys of v̂ and of FID statistics) change too.
_RECIPE_VERSION = 1


class DatasetNotFoundError(FileNotFoundError):
    """The data of a dataset is not on disk (and could not be downloaded); the message says where and how to get it."""


class ImageDataset(Dataset):
    """What every dataset here shares: items are float32 (3, S, S) images in [-1, 1], optionally flipped.

    Subclasses implement `pixels(index)`, the uint8 (3, S, S) image, and set `source_files` (the files whose
    content defines the data) and `recipe` (JSON-able settings of the preparation); `dataset_fingerprint` hashes both.
    """

    def __init__(self, image_size: int, augment: bool, source_files: list[Path], recipe: dict):
        self.image_size = image_size
        self.augment = augment
        self.source_files = source_files
        self.recipe = recipe

    def pixels(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.pixels(index).to(torch.float32) / 127.5 - 1  # (3, S, S): {0, …, 255} → [-1, 1]
        if self.augment and torch.rand(()) < 0.5:  # the paper's only augmentation
            image = image.flip(-1)
        return image

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        details = f"{len(self)} images, {self.image_size}px, augment={self.augment}{self.extra_repr()}"
        return f"{type(self).__name__}({details})"


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int (pixels per side), got {image_size!r}")
    return image_size


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return name


def build_dataset(
    name: str,
    data_root: str | os.PathLike,
    image_size: int,
    *,
    train: bool = True,
    augment: bool = False,
    download: bool = True,
) -> ImageDataset:
    """The dataset `name` as float32 images (3, image_size, image_size) in [-1, 1], no labels.

    Args:
        name: one of `DATASETS`.
        data_root: the folder holding the data (for `folder`, the image folder itself); ignored by `photos`.
        image_size: side of the square output images, in pixels. CIFAR images are resized (bilinear, antialiased)
            when it is not 32; the paper uses 32 for CIFAR and 64 for CelebA.
        train: the training split (`folder` has only one split and ignores this).
        augment: random horizontal flip with probability 1/2, drawn from torch's global generator.
        download: fetch CIFAR or CelebA with torchvision when missing; never used by `folder` and `photos`.

    Raises:
        ValueError: unknown `name` or an `image_size` that is not a positive int.
        DatasetNotFoundError: the data is missing and could not be downloaded; the message says how to get it.
    """
    _check_name(name)
    _check_image_size(image_size)
    if name == "photos":
        return PhotoCrops(image_size, train=train, augment=augment)
    root = Path(data_root).expanduser().resolve()
    if name in ("cifar10", "cifar100"):
        return CifarImages(name, root, image_size, train=train, augment=augment, download=download)
    if name == "celeba64":
        return ImageFiles.celeba(root, image_size, train=train, augment=augment, download=download)
    return ImageFiles.folder(root, image_size, augment=augment)


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
#
# torchvision verifies the md5 sum of every extracted batch file before reading it. That rejects any CIFAR folder
# that is not byte-identical to the official one, including small folders written in the real pickle format (the
# tests write such folders). The subclasses below accept an extracted folder whose files all exist, and keep
# torchvision's `download`, which still verifies the md5 sum of the archive it fetches.


class _ExtractedFolderCheck:
    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return all((folder / filename).is_file() for filename, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        # The class names are unused here (images only); read them when present, without the md5 check.
        path = Path(self.root, self.base_folder, self.meta["filename"])
        self.classes = []
        if path.is_file():
            with open(path, "rb") as file:
                self.classes = pickle.load(file, encoding="latin1").get(self.meta["key"], [])
        self.class_to_idx = {label: index for index, label in enumerate(self.classes)}


class ExtractedCIFAR10(_ExtractedFolderCheck, torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10, accepting any well-formed extracted `cifar-10-batches-py/` (no per-file md5)."""


class ExtractedCIFAR100(_ExtractedFolderCheck, torchvision.datasets.CIFAR100):
    """torchvision's CIFAR-100, accepting any well-formed extracted `cifar-100-python/` (no per-file md5)."""


_CIFAR_CLASSES = {"cifar10": ExtractedCIFAR10, "cifar100": ExtractedCIFAR100}


class CifarImages(ImageDataset):
    """CIFAR-10 or CIFAR-100 held in memory as one uint8 tensor (N, 3, 32, 32); items are cheap views."""

    def __init__(self, name: str, root: Path, image_size: int, *, train: bool, augment: bool, download: bool):
        cifar_class = _CIFAR_CLASSES[name]
        folder = root / cifar_class.base_folder
        files = [folder / filename for filename, _ in cifar_class.train_list + cifar_class.test_list]
        if all(path.is_file() for path in files):
            cifar = cifar_class(root, train=train, download=False)
        elif download:
            try:
                cifar = cifar_class(root, train=train, download=True)
            except Exception as error:  # no network, a proxy, a failed md5 of the archive: all mean "not here"
                raise DatasetNotFoundError(_cifar_missing(name, folder, f"the download failed ({error})")) from error
        else:
            raise DatasetNotFoundError(_cifar_missing(name, folder, "not on disk, and this call does not download"))
        # torchvision stores (N, 32, 32, 3) as a transposed view of the (N, 3, 32, 32) array it read: undo the view.
        self.images = torch.from_numpy(cifar.data.transpose(0, 3, 1, 2)).contiguous()  # (N, 3, 32, 32) uint8
        split = cifar_class.train_list if train else cifar_class.test_list
        super().__init__(
            image_size,
            augment,
            source_files=[folder / filename for filename, _ in split],
            recipe={"name": name, "train": train, "resize": "bilinear-antialias" if image_size != 32 else None},
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def extra_repr(self) -> str:
        return f", {self.recipe['name']}, {'train' if self.recipe['train'] else 'test'}"

    def pixels(self, index: int) -> torch.Tensor:
        image = self.images[index]  # (3, 32, 32)
        if self.image_size == image.shape[-1]:
            return image
        resized = F.interpolate(
            image[None].to(torch.float32), size=(self.image_size,) * 2, mode="bilinear", antialias=True
        )[0]
        return resized.round().clamp(0, 255).to(torch.uint8)


def _cifar_missing(name: str, folder: Path, reason: str) -> str:
    label = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[name]
    return (
        f"{label} not found at {folder} ({reason}). Run the same command once where the network is reachable (a "
        f"training run downloads missing CIFAR data into data_root by itself), or place the extracted archive "
        f"({folder.name}/, from the python version of the {label} archive) in {folder.parent}, or point data_root "
        f"(-p data_root DIR) at the folder that holds {folder.name}/."
    )


# ---------------------------------------------------------------------------------------------------------------
# Image files: CelebA-64 and any folder


class ImageFiles(ImageDataset):
    """Images decoded from files on every access (the data can be large), prepared in one of two ways.

    `crop_size` set (CelebA-64): centre crop crop_size × crop_size, then resize to S × S.
    `crop_size` None (folder): resize so the shorter side is S, then centre crop S × S.
    Both follow torchvision's `CenterCrop` and `Resize` (PIL bilinear, which antialiases when shrinking).
    """

    def __init__(
        self,
        files: list[Path],
        image_size: int,
        augment: bool,
        crop_size: int | None,
        source_files: list[Path],
        recipe: dict,
    ):
        self.files = files
        self.crop_size = crop_size
        super().__init__(image_size, augment, source_files=source_files, recipe=recipe)

    def __len__(self) -> int:
        return len(self.files)

    def extra_repr(self) -> str:
        return f", {self.recipe['name']}, first file {self.files[0]}"

    def pixels(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as file:
            image = file.convert("RGB")
        size = self.image_size
        if self.crop_size is not None:
            image = _center_crop(image, self.crop_size).resize((size, size), Image.Resampling.BILINEAR)
        else:
            image = _center_crop(image.resize(_shorter_side_to(image.size, size), Image.Resampling.BILINEAR), size)
        return _to_uint8_tensor(image)

    @classmethod
    def folder(cls, root: Path, image_size: int, *, augment: bool) -> ImageFiles:
        """Every image under `root`, recursively, in sorted order."""
        if not root.is_dir():
            raise DatasetNotFoundError(f"image folder {root} does not exist; point data_root at a folder of images")
        files = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
        if not files:
            raise DatasetNotFoundError(
                f"image folder {root} holds no images (looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return cls(files, image_size, augment, None, source_files=files, recipe={"name": "folder"})

    @classmethod
    def celeba(cls, root: Path, image_size: int, *, train: bool, augment: bool, download: bool) -> ImageFiles:
        """CelebA's aligned 178×218 JPEGs, centre-cropped to 140×140 and resized (the usual CelebA-64 recipe).

        Looks for `root/img_align_celeba/` and torchvision's layout `root/celeba/img_align_celeba/`; the split comes
        from `list_eval_partition.txt` next to that folder (train: partition 0, test: partition 2). Without the
        partition file, train=True takes every image and train=False is an error.
        """
        folder = _find_celeba(root)
        if folder is None and download:
            try:
                # torchvision's Google-Drive download (needs gdown; often rate-limited). It writes root/celeba/.
                torchvision.datasets.CelebA(root, split="all", target_type=[], download=True)
            except Exception as error:
                raise DatasetNotFoundError(_celeba_missing(root, f"the download failed ({error})")) from error
            folder = _find_celeba(root)
        if folder is None:
            reason = "not on disk, and this call does not download" if not download else "not extracted"
            raise DatasetNotFoundError(_celeba_missing(root, reason))

        present = sorted(name for name in os.listdir(folder) if name.lower().endswith((".jpg", ".jpeg", ".png")))
        partition_file = folder.parent / "list_eval_partition.txt"
        if partition_file.is_file():
            wanted = "0" if train else "2"
            names = [
                fields[0]
                for fields in (line.split() for line in partition_file.read_text().splitlines())
                if len(fields) == 2 and fields[1] == wanted
            ]
            missing = sorted(set(names) - set(present))
            if missing:
                raise DatasetNotFoundError(
                    f"{len(missing)} of the {len(names)} images that {partition_file} puts in the "
                    f"{'train' if train else 'test'} split are missing from {folder} (first: {missing[0]}); "
                    "extract img_align_celeba.zip completely"
                )
            source_files = [folder / name for name in names] + [partition_file]
        elif train:
            names = present
            source_files = [folder / name for name in names]
        else:
            raise DatasetNotFoundError(
                f"train=False needs {partition_file} (CelebA's list_eval_partition.txt) to select the test split"
            )
        if not names:
            raise DatasetNotFoundError(_celeba_missing(root, f"{folder} holds no images of the requested split"))
        recipe = {"name": "celeba64", "train": train, "crop": 140, "partition_file": partition_file.is_file()}
        return cls([folder / name for name in names], image_size, augment, 140, source_files, recipe)


def _shorter_side_to(image_size: tuple[int, int], size: int) -> tuple[int, int]:
    # torchvision's Resize(size): the shorter side becomes `size`, the longer one int(size · long / short).
    width, height = image_size
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    # torchvision's CenterCrop rounding, so that prepared images match the usual pipelines pixel for pixel.
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    # numpy does the HWC → CHW copy: torch's threaded copy of a small permuted uint8 tensor is ~100× slower when
    # the cores are busy (e.g. with DataLoader workers).
    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())  # (3, H, W) uint8


def _find_celeba(root: Path) -> Path | None:
    for folder in (root / "img_align_celeba", root / "celeba" / "img_align_celeba"):
        if folder.is_dir():
            return folder
    return None


def _celeba_missing(root: Path, reason: str) -> str:
    return (
        f"CelebA not found under {root} ({reason}): looked for {root / 'img_align_celeba'} and "
        f"{root / 'celeba' / 'img_align_celeba'}. Download img_align_celeba.zip (the aligned and cropped JPEGs) and "
        "list_eval_partition.txt from the CelebA project page or a mirror of it, and unzip so that "
        f"{root / 'img_align_celeba' / '000001.jpg'} exists (or point data_root, -p data_root DIR, at the folder "
        "that holds img_align_celeba/); or run the same command once where the network is reachable, which tries "
        "torchvision's Google Drive download (it needs the gdown package and is often rate-limited)."
    )


# ---------------------------------------------------------------------------------------------------------------
# Photos: an offline stand-in for CIFAR, cut from photographs that ship inside installed packages.
#
# The photographs are few, so the crops overlap and repeat content: this is a dataset for CPU demos and tests of the
# pipeline, not a benchmark. Each photo is split by rows: the top three quarters give the train crops, the bottom
# quarter the test crops, so no test pixel appears in a train crop. (Rows, not columns, because motorcycle_left and
# motorcycle_right are a rectified stereo pair: the same scene row sits at the same image row in both.) A crop covers
# a fraction of its region's shorter side drawn log-uniformly from PHOTO_CROP_SIDE (like torchvision's
# RandomResizedCrop, square, no stretching), so a 32×32 crop at fraction 1 shows a whole scene and at 0.3 an object.
# The fractions take PHOTO_SCALES discrete values: each region is resized once per value, with antialiasing, and a
# crop is then a slice of one such level, which makes items as cheap as indexing a tensor.

# (package, path inside it): the RGB natural photographs of scikit-image and matplotlib. Left out: grayscale images
# (camera, coins, moon, textures), drawings and charts (color, logo, horse, phantom, chessboards).
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),  # Eileen Collins in a spacesuit, US flag
    "chelsea": ("skimage", "data/chelsea.png"),  # a tabby cat
    "coffee": ("skimage", "data/coffee.png"),  # a cup of coffee on a saucer
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),  # galaxies
    "ihc": ("skimage", "data/ihc.png"),  # immunohistochemistry micrograph
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),  # Middlebury stereo pair, left view
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),  # and right view
    "retina": ("skimage", "data/retina.jpg"),  # fundus photograph of a human retina
    "rocket": ("skimage", "data/rocket.jpg"),  # Falcon 9 launch
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),  # portrait
}
PHOTO_TEST_ROWS = 0.25  # the bottom quarter of each photo's rows is the test region
PHOTO_CROP_SIDE = (0.3, 1.0)  # crop side / shorter side of the region, log-uniform between these
PHOTO_SCALES = 16  # discrete crop fractions, hence resized copies of each region
PHOTO_CROPS_PER_PHOTO = {True: 640, False: 160}  # train: 6400 crops in all, test: 1600
PHOTO_SEEDS = {True: 0, False: 1}  # torch.Generator seeds of the crop positions and scales


class PhotoCrops(ImageDataset):
    """Square crops of the photographs in `PHOTOS`, the same on every machine; no network, ever."""

    def __init__(self, image_size: int, *, train: bool = True, augment: bool = False):
        self.train = train
        self.levels, self.crops = _photo_crops(image_size, train)  # levels: (3, h, w) uint8; crops: (N, 3) long
        super().__init__(
            image_size,
            augment,
            source_files=[_photo_path(name) for name in PHOTOS],
            recipe={
                "name": "photos",
                "train": train,
                "photos": list(PHOTOS),
                "test_rows": PHOTO_TEST_ROWS,
                "crop_side": list(PHOTO_CROP_SIDE),
                "scales": PHOTO_SCALES,
                "crops_per_photo": PHOTO_CROPS_PER_PHOTO[train],
                "seed": PHOTO_SEEDS[train],
            },
        )

    def __len__(self) -> int:
        return self.crops.shape[0]

    def pixels(self, index: int) -> torch.Tensor:
        level, top, left = self.crops[index].tolist()
        return self.levels[level][:, top : top + self.image_size, left : left + self.image_size]

    def extra_repr(self) -> str:
        return f", {'train' if self.train else 'test'}, from {len(PHOTOS)} photos"


def _photo_path(name: str) -> Path:
    package, relative = PHOTOS[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"the photos dataset needs the {package!r} package for its photograph {name!r}: "
            f"pip install {'scikit-image' if package == 'skimage' else package}"
        )
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DatasetNotFoundError(f"photograph {name!r} is missing from the installed {package!r} package: {path}")
    return path


@lru_cache(maxsize=None)
def _decoded_photo(path: Path) -> Image.Image:
    with Image.open(path) as file:
        return file.convert("RGB")


@lru_cache(maxsize=4)
def _photo_crops(image_size: int, train: bool) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Resized copies (levels) of every photo's train or test region and the crop table (level, top, left)."""
    low, high = PHOTO_CROP_SIDE
    fractions = [high * (low / high) ** (k / (PHOTO_SCALES - 1)) for k in range(PHOTO_SCALES)]
    generator = torch.Generator().manual_seed(PHOTO_SEEDS[train])
    count = PHOTO_CROPS_PER_PHOTO[train]
    levels, crops = [], []
    for name in PHOTOS:
        photo = _decoded_photo(_photo_path(name))
        split_row = round(photo.height * (1 - PHOTO_TEST_ROWS))
        region = photo.crop((0, 0, photo.width, split_row) if train else (0, split_row, photo.width, photo.height))
        first = len(levels)
        for fraction in fractions:
            scale = image_size / fraction / min(region.size)  # the crop's side, fraction · shorter, becomes S
            shape = (max(image_size, round(region.width * scale)), max(image_size, round(region.height * scale)))
            # reducing_gap: shrink by an integer factor (box filter) first while ≥ 3× too large, then resample;
            # twice as fast, within a fraction of a grey level of resampling at full resolution.
            levels.append(_to_uint8_tensor(region.resize(shape, Image.Resampling.BILINEAR, reducing_gap=3.0)))
        level = torch.randint(PHOTO_SCALES, (count,), generator=generator)
        heights = torch.tensor([levels[first + k].shape[1] for k in range(PHOTO_SCALES)])[level]
        widths = torch.tensor([levels[first + k].shape[2] for k in range(PHOTO_SCALES)])[level]
        uniform = torch.rand(count, 2, generator=generator, dtype=torch.float64)
        top = (uniform[:, 0] * (heights - image_size + 1)).long()
        left = (uniform[:, 1] * (widths - image_size + 1)).long()
        crops.append(torch.stack([first + level, top, left], dim=1))
    return tuple(levels), torch.cat(crops)


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints and the cached principal axis


def dataset_fingerprint(name: str, data_root: str | os.PathLike, image_size: int, *, train: bool = True) -> str:
    """A short stable string naming the data, e.g. "cifar10-train-32px-50000-3f9c0a1b2d4e": a cache key for v̂ and
    for FID reference statistics.

    The readable part gives the name, split, image size and number of images; the hash also covers the resolved
    data root (not for `photos`, which has none), the preparation recipe and the name and size of every source
    file, so moving, adding or replacing data changes the key. The data must be on disk (nothing is downloaded).
    """
    dataset = build_dataset(name, data_root, image_size, train=train, download=False)
    root = None if name == "photos" else Path(data_root).expanduser().resolve()

    def described(path: Path) -> list:
        shown = path.name if root is None else os.path.relpath(path, root)
        return [shown, path.stat().st_size]

    identity = {
        "version": _RECIPE_VERSION,
        "name": name,
        "image_size": image_size,
        "train": train,
        "num_images": len(dataset),
        "root": None if root is None else str(root),
        "recipe": dataset.recipe,
        "files": [described(path) for path in dataset.source_files],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{name}-{'train' if train else 'test'}-{image_size}px-{len(dataset)}-{digest}"


def cached_principal_axis(
    dataset: Dataset, cache_path: str | os.PathLike, batch_size: int = 500, progress: bool = True
) -> dict:
    """Eq. (9)'s v̂ for `dataset`: `sdmlib.principal_axis` over the data, computed once and cached as JSON.

    One streaming pass over a DataLoader (no shuffle; flips do not change per-pixel statistics). The result is
    written atomically to `cache_path`; later calls read it back without touching the data, after checking that it
    was computed on as many images as `dataset` has (key the path with `dataset_fingerprint` to tell datasets apart).

    Returns:
        {"axis": [n floats], "eigenvalues": [n floats], "mean": [n floats], "covariance": [[n floats] × n],
        "num_pixels": int, "num_images": int}, floats from the float64 computation.
    """
    cache_path = Path(cache_path)
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if cached.get("num_images") != len(dataset):
            raise ValueError(
                f"the principal axis cached at {cache_path} was computed on {cached.get('num_images')} images, "
                f"but the dataset has {len(dataset)}; delete the file or use another cache path"
            )
        return cached
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    batches = tqdm(loader, desc=f"principal axis of {len(dataset)} images", unit="batch", disable=not progress)
    result = principal_axis(batches)
    cached = {
        "axis": result.axis.tolist(),
        "eigenvalues": result.eigenvalues.tolist(),
        "mean": result.mean.tolist(),
        "covariance": result.covariance.tolist(),
        "num_pixels": result.num_pixels,
        "num_images": len(dataset),
    }
    save_json(cache_path, cached)
    return cached
