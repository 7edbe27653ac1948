"""sdmlib.data against data written here in the real on-disk formats: CIFAR pickles, CelebA JPEGs, image folders."""

import json
import pickle
import socket

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image
from torch.testing import assert_close
from torch.utils.data import DataLoader, Dataset

import sdmlib
from sdmlib import data
from sdmlib.data import DATASETS, DatasetNotFoundError, build_dataset, cached_principal_axis, dataset_fingerprint


def model_range(pixels) -> torch.Tensor:
    """uint8 values {0, …, 255} as the [-1, 1] floats the datasets yield."""
    return torch.as_tensor(np.asarray(pixels), dtype=torch.float32) / 127.5 - 1


# ---------------------------------------------------------------------------------------------------------------
# CIFAR: pickles with 'data' (N, 3072) uint8, each row the R, G and B planes of a 32×32 image in row-major order.

CIFAR10_TRAIN = [f"data_batch_{k}" for k in range(1, 6)]


def write_cifar_batch(path, rows: np.ndarray, labels: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(
            {"batch_label": path.name, "data": rows, "filenames": [f"{i}.png" for i in range(len(rows))], **labels},
            file,
        )


def write_cifar10(root, per_batch=3, test=4) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = {}
    for name, count in [(name, per_batch) for name in CIFAR10_TRAIN] + [("test_batch", test)]:
        rows[name] = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        write_cifar_batch(folder / name, rows[name], {"labels": list(rng.integers(0, 10, count))})
    # A known pixel: image 0 of data_batch_2, row 5, column 7, (R, G, B) = (10, 200, 77).
    for channel, value in enumerate((10, 200, 77)):
        rows["data_batch_2"][0, channel * 1024 + 5 * 32 + 7] = value
    write_cifar_batch(folder / "data_batch_2", rows["data_batch_2"], {"labels": [0] * per_batch})
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, file)
    return rows


def test_cifar10_reads_the_real_format_pixel_for_pixel(tmp_path):
    rows = write_cifar10(tmp_path, per_batch=3, test=4)
    train = build_dataset("cifar10", tmp_path, 32, download=False)
    test = build_dataset("cifar10", tmp_path, 32, train=False, download=False)
    assert (len(train), len(test)) == (15, 4)

    image = train[3]  # first image of data_batch_2
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert_close(image[:, 5, 7], model_range([10, 200, 77]))
    assert_close(image, model_range(rows["data_batch_2"][0].reshape(3, 32, 32)))
    assert_close(train[14], model_range(rows["data_batch_5"][2].reshape(3, 32, 32)))
    assert_close(test[1], model_range(rows["test_batch"][1].reshape(3, 32, 32)))
    everything = torch.stack([train[i] for i in range(len(train))])
    assert everything.min() >= -1 and everything.max() <= 1


def test_cifar100_reads_the_real_format(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = {
        "train": rng.integers(0, 256, (5, 3072), dtype=np.uint8),
        "test": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
    }
    for name, batch in rows.items():
        write_cifar_batch(folder / name, batch, {"fine_labels": [3] * len(batch), "coarse_labels": [1] * len(batch)})
    with open(folder / "meta", "wb") as file:
        pickle.dump(
            {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]},
            file,
        )

    train = build_dataset("cifar100", tmp_path, 32, download=False)
    test = build_dataset("cifar100", tmp_path, 32, train=False, download=False)
    assert (len(train), len(test)) == (5, 2)
    assert_close(train[4], model_range(rows["train"][4].reshape(3, 32, 32)))
    assert_close(test[0], model_range(rows["test"][0].reshape(3, 32, 32)))


def test_cifar_resizes_to_other_image_sizes(tmp_path):
    rows = write_cifar10(tmp_path)
    rows_constant = np.full((1, 3072), 90, dtype=np.uint8)
    write_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", rows_constant, {"labels": [0]})
    image = build_dataset("cifar10", tmp_path, 16, train=False, download=False)[0]
    assert image.shape == (3, 16, 16)
    assert_close(image, torch.full((3, 16, 16), 90 / 127.5 - 1))  # a constant image stays constant
    assert build_dataset("cifar10", tmp_path, 48, download=False)[0].shape == (3, 48, 48)
    assert rows  # the train batches are untouched


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_the_path_and_the_remedy(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as raised:
        build_dataset(name, tmp_path, 32, download=False)
    message = str(raised.value)
    assert str(tmp_path) in message and folder in message and "-p data_root" in message  # a remedy that exists
    assert "download=True" not in message  # no such parameter
    assert isinstance(raised.value, FileNotFoundError)


def test_failed_downloads_become_dataset_not_found(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network here")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.CelebA, "download", offline)
    for name in ("cifar10", "cifar100", "celeba64"):
        with pytest.raises(DatasetNotFoundError, match="download failed.*no network here") as raised:
            build_dataset(name, tmp_path, 32, download=True)
        assert str(tmp_path) in str(raised.value)
        assert isinstance(raised.value.__cause__, OSError)


def test_incomplete_cifar_folder_is_missing(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        build_dataset("cifar10", tmp_path, 32, download=False)


# ---------------------------------------------------------------------------------------------------------------
# CelebA: aligned 178×218 JPEGs in img_align_celeba/, list_eval_partition.txt next to it.

CENTRE, BORDER = (200, 60, 30), (20, 120, 240)


def celeba_image(index: int) -> Image.Image:
    """178×218 with the centre 140×140 (rows 39–178, columns 19–158: torchvision's CenterCrop) one colour."""
    pixels = np.empty((218, 178, 3), dtype=np.uint8)
    pixels[:] = BORDER
    pixels[39:179, 19:159] = CENTRE
    pixels[0, index] = (255, 255, 255)  # makes every file different, outside the crop
    return Image.fromarray(pixels)


def write_celeba(folder, partitions=(0, 0, 1, 2, 0), partition_file=True) -> list[str]:
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{k + 1:06d}.jpg" for k in range(len(partitions))]
    for index, name in enumerate(names):
        celeba_image(index).save(images / name, quality=100, subsampling=0)
    if partition_file:
        lines = [f"{name} {partition}" for name, partition in zip(names, partitions)]
        (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return names


def test_celeba64_centre_crops_and_selects_the_partition(tmp_path):
    write_celeba(tmp_path)
    train = build_dataset("celeba64", tmp_path, 64, download=False)
    test = build_dataset("celeba64", tmp_path, 64, train=False, download=False)
    assert (len(train), len(test)) == (3, 1)
    assert [path.name for path in train.files] == ["000001.jpg", "000002.jpg", "000005.jpg"]
    assert [path.name for path in test.files] == ["000004.jpg"]

    image = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    # Only the centre colour survives the 140×140 crop, up to JPEG rounding; a crop off by one pixel would blend
    # the border colour into the edge rows or columns by about 1/2 (140 → 64 averages ~2 pixels per output pixel).
    assert (image - model_range(CENTRE)[:, None, None]).abs().max() < 0.03


def test_celeba64_without_partition_file_and_in_torchvisions_layout(tmp_path):
    write_celeba(tmp_path / "celeba", partitions=(0, 1, 2), partition_file=False)
    assert len(build_dataset("celeba64", tmp_path, 64, download=False)) == 3  # every image
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition.txt"):
        build_dataset("celeba64", tmp_path, 64, train=False, download=False)
    assert build_dataset("celeba64", tmp_path, 32, download=False)[2].shape == (3, 32, 32)


def test_celeba64_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as raised:
        build_dataset("celeba64", tmp_path, 64, download=False)
    assert str(tmp_path / "img_align_celeba") in str(raised.value) and "img_align_celeba.zip" in str(raised.value)
    write_celeba(tmp_path, partitions=(0, 0))
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of the 2 images"):
        build_dataset("celeba64", tmp_path, 64, download=False)


# ---------------------------------------------------------------------------------------------------------------
# Folder of images


def test_folder_is_recursive_and_resizes_the_shorter_side_then_centre_crops(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    halves = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high: left half red, right half blue
    halves[:, :20] = (255, 0, 0)
    halves[:, 20:] = (0, 0, 255)
    Image.fromarray(halves).save(tmp_path / "a" / "halves.png")
    Image.new("RGB", (16, 30), (12, 34, 56)).save(tmp_path / "a" / "b" / "plain.bmp")
    Image.new("L", (50, 50), 128).save(tmp_path / "grey.webp", lossless=True)
    Image.new("RGBA", (20, 20), (1, 2, 3, 4)).save(tmp_path / "alpha.PNG")
    (tmp_path / "notes.txt").write_text("not an image")

    dataset = build_dataset("folder", tmp_path, 16)
    # Sorted by path: a/b/plain.bmp, a/halves.png, alpha.PNG, grey.webp; notes.txt is not an image.
    assert [path.name for path in dataset.files] == ["plain.bmp", "halves.png", "alpha.PNG", "grey.webp"]
    images = torch.stack([dataset[i] for i in range(len(dataset))])
    assert images.shape == (4, 3, 16, 16)
    assert_close(images[0], model_range((12, 34, 56))[:, None, None].expand(3, 16, 16))
    assert_close(images[2], model_range((1, 2, 3))[:, None, None].expand(3, 16, 16))  # alpha dropped
    assert_close(images[3], torch.full((3, 16, 16), 128 / 127.5 - 1))  # grey → R = G = B
    # 40×20 → 32×16, centre crop keeps columns 8–23: the left 8 columns red, the right 8 blue, the seam blended.
    assert_close(images[1][:, :, :7], model_range((255, 0, 0))[:, None, None].expand(3, 16, 7))
    assert_close(images[1][:, :, 9:], model_range((0, 0, 255))[:, None, None].expand(3, 16, 7))


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        build_dataset("folder", tmp_path / "nowhere", 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        build_dataset("folder", tmp_path / "empty", 32)


# ---------------------------------------------------------------------------------------------------------------
# Photos: offline crops of the photographs shipped with scikit-image and matplotlib


@pytest.fixture
def fresh_photo_caches():
    data._decoded_photo.cache_clear()
    data._photo_crops.cache_clear()
    yield
    data._decoded_photo.cache_clear()
    data._photo_crops.cache_clear()


def refuse_network(*args, **kwargs):
    raise AssertionError("the photos dataset must not use the network")


def test_photos_are_offline_deterministic_and_in_range(fresh_photo_caches, monkeypatch):
    monkeypatch.setattr(socket, "socket", refuse_network)
    monkeypatch.setattr(socket, "create_connection", refuse_network)
    train = build_dataset("photos", "ignored", 32)
    test = build_dataset("photos", None, 32, train=False)
    assert len(train) == len(data.PHOTOS) * data.PHOTO_CROPS_PER_PHOTO[True]
    assert len(test) == len(data.PHOTOS) * data.PHOTO_CROPS_PER_PHOTO[False]
    first = torch.stack([train[i] for i in range(0, len(train), 7)])
    assert first.shape[1:] == (3, 32, 32) and first.dtype == torch.float32
    assert first.min() >= -1 and first.max() <= 1 and first.std() > 0.2

    data._decoded_photo.cache_clear()
    data._photo_crops.cache_clear()
    again = build_dataset("photos", None, 32)
    assert again.levels[0] is not train.levels[0]  # really rebuilt from the files
    assert_close(torch.stack([again[i] for i in range(0, len(again), 7)]), first, rtol=0, atol=0)
    assert build_dataset("photos", None, 24, train=False)[5].shape == (3, 24, 24)


def test_photo_splits_come_from_disjoint_rows(fresh_photo_caches, monkeypatch, tmp_path):
    # Every photo replaced by one whose train rows (top three quarters) are red and test rows blue.
    pixels = np.zeros((200, 300, 3), dtype=np.uint8)
    pixels[:150] = (255, 0, 0)
    pixels[150:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "split.png")
    monkeypatch.setattr(data, "_photo_path", lambda name: tmp_path / "split.png")
    train = torch.stack(list(build_dataset("photos", None, 16)))
    test = torch.stack(list(build_dataset("photos", None, 16, train=False)))
    assert_close(train, model_range((255, 0, 0))[None, :, None, None].expand_as(train))
    assert_close(test, model_range((0, 0, 255))[None, :, None, None].expand_as(test))


def test_augment_flips_some_items_and_nothing_else():
    plain = build_dataset("photos", None, 32)
    flipping = build_dataset("photos", None, 32, augment=True)
    torch.manual_seed(0)
    flipped = []
    for index in range(40):
        item, original = flipping[index], plain[index]
        assert torch.equal(item, original) or torch.equal(item, original.flip(-1))
        flipped.append(not torch.equal(item, original))
    assert 5 < sum(flipped) < 35


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints and the cached principal axis


def test_fingerprint_is_stable_and_tracks_the_data(tmp_path):
    for k in range(3):
        Image.new("RGB", (20, 20), (k, 2 * k, 3 * k)).save(tmp_path / f"{k}.png")
    fingerprint = dataset_fingerprint("folder", tmp_path, 16)
    assert fingerprint == dataset_fingerprint("folder", str(tmp_path), 16)
    assert fingerprint.startswith("folder-train-16px-3-") and "/" not in fingerprint
    assert dataset_fingerprint("folder", tmp_path, 32) != fingerprint
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "3.png")
    assert dataset_fingerprint("folder", tmp_path, 16).startswith("folder-train-16px-4-")

    photos = dataset_fingerprint("photos", None, 32)
    assert photos == dataset_fingerprint("photos", tmp_path, 32)  # data_root plays no part
    assert photos != dataset_fingerprint("photos", None, 32, train=False)


class RandomImages(Dataset):
    def __init__(self, count=37, size=8, broken=False):
        generator = torch.Generator().manual_seed(0)
        mixing = torch.tensor([[1.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 0.6]])
        noise = torch.randn(count, size, size, 3, generator=generator)
        self.images = (noise @ mixing).permute(0, 3, 1, 2).tanh()  # (count, 3, size, size), correlated channels
        self.broken = broken

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        if self.broken:
            raise AssertionError("the cache must be read without touching the data")
        return self.images[index]


def test_cached_principal_axis_computes_once_then_reads_the_cache(tmp_path):
    cache = tmp_path / "axes" / "pca.json"
    computed = cached_principal_axis(RandomImages(), cache, batch_size=10, progress=False)
    reference = sdmlib.principal_axis(DataLoader(RandomImages(), batch_size=10))
    for key in ("axis", "eigenvalues", "mean", "covariance"):
        assert_close(torch.tensor(computed[key], dtype=torch.float64), getattr(reference, key))
    assert computed["num_pixels"] == reference.num_pixels == 37 * 64
    assert computed["num_images"] == 37
    assert json.loads(cache.read_text()) == computed
    assert [path.name for path in cache.parent.iterdir()] == ["pca.json"]  # no temporary file left behind

    assert cached_principal_axis(RandomImages(broken=True), cache, progress=False) == computed
    with pytest.raises(ValueError, match="37 images"):
        cached_principal_axis(RandomImages(count=5, broken=True), cache, progress=False)


def test_principal_axis_of_photos_is_close_to_luminance(tmp_path):
    result = cached_principal_axis(build_dataset("photos", None, 32), tmp_path / "photos.json", progress=False)
    luminance = torch.ones(3, dtype=torch.float64) / 3**0.5
    assert torch.tensor(result["axis"], dtype=torch.float64) @ luminance > 0.9


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs


def test_unknown_name_and_bad_image_size(tmp_path):
    with pytest.raises(ValueError, match="'cifar11'.*cifar10, cifar100, celeba64, folder, photos"):
        build_dataset("cifar11", tmp_path, 32)
    with pytest.raises(ValueError, match="'nope'"):
        dataset_fingerprint("nope", tmp_path, 32)
    for size in (0, -32, 32.0, True, "32"):
        with pytest.raises(ValueError, match=f"image_size must be a positive int.*{size!r}"):
            build_dataset("photos", tmp_path, size)
    assert DATASETS == ("cifar10", "cifar100", "celeba64", "folder", "photos")
