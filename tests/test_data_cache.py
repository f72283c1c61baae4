"""The on-disk cache of decoded image folders: built once, reused, rebuilt when the folder
changes or the cache is damaged, shared by processes, and the same images as decoding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tuner.errors import DataError
from tuner.vae import data as D
from tuner.vae.data import cache
from tuner.vae.data.folder import ImageFolder


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    monkeypatch.setattr(cache, "_verified", set())
    return root


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        pixels = rng.integers(0, 256, (12 + i, 10, 3), dtype=np.uint8)  # sizes differ: resized
        Image.fromarray(pixels).save(folder / ("sub" if i % 3 else ".") / f"p{i}.png")
    return folder


def decoded_directly(folder: Path, size: list[int]) -> np.ndarray:
    reader = ImageFolder(str(folder), size=size, color="rgb")
    return np.stack([reader._read(f) for f in reader._files(folder)])


class CountingReads:
    def __init__(self, monkeypatch):
        self.count = 0
        original = ImageFolder._read

        def counting(reader, file):
            self.count += 1
            return original(reader, file)

        monkeypatch.setattr(ImageFolder, "_read", counting)


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_a_folder_is_decoded_once_then_memory_mapped(cache_dir, photos, monkeypatch):
    expected = decoded_directly(photos, [8, 8])
    reads = CountingReads(monkeypatch)
    first = ImageFolder(str(photos), size=[8, 8]).load().train
    assert reads.count == 10 and isinstance(first, np.memmap) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, expected)  # the same images
    again = ImageFolder(str(photos), size=[8, 8]).load().train
    assert reads.count == 10  # read from the cache, not decoded again
    np.testing.assert_array_equal(again, first)
    assert len(entries(cache_dir)) == 1 and not any(name.startswith(".") for name in entries(cache_dir))
    # The split, its checks and the float conversion are as before.
    splits = D.prepare(ImageFolder(str(photos), size=[8, 8]), split_seed=1)
    assert splits.image_shape == (8, 8, 3) and splits.val.dtype == np.float32
    # The training rows are read from the cache file itself: no copy per process.
    assert isinstance(splits.train, D.ImageRows) and isinstance(splits.train.base, np.memmap)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 10


def test_a_changed_folder_or_option_is_decoded_again(cache_dir, photos, monkeypatch):
    reads = CountingReads(monkeypatch)
    ImageFolder(str(photos), size=[8, 8]).load()
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(photos / "new.png")  # a file added
    assert len(ImageFolder(str(photos), size=[8, 8]).load().train) == 11
    (photos / "p0.png").unlink()  # a file removed
    assert len(ImageFolder(str(photos), size=[8, 8]).load().train) == 10
    Image.fromarray(np.full((9, 9, 3), 200, np.uint8)).save(photos / "new.png")  # a file replaced
    images = ImageFolder(str(photos), size=[8, 8]).load().train
    np.testing.assert_array_equal(images, decoded_directly(photos, [8, 8]))
    assert ImageFolder(str(photos), size=[4, 4]).load().train.shape == (10, 4, 4, 3)  # another size
    assert reads.count == 10 + 11 + 10 + 10 + 10 + 10  # each load decoded once, plus decoded_directly


def test_a_damaged_cache_is_rebuilt_never_used(cache_dir, photos, monkeypatch, capsys):
    good = np.array(ImageFolder(str(photos), size=[8, 8]).load().train)
    (entry,) = cache_dir.iterdir()
    with open(entry / cache.IMAGES, "r+b") as file:  # one byte of the pixels changed
        file.seek(-5, os.SEEK_END)
        file.write(bytes([(file.read(1)[0] + 1) % 256]))
    monkeypatch.setattr(cache, "_verified", set())  # a new process
    reads = CountingReads(monkeypatch)
    images = ImageFolder(str(photos), size=[8, 8]).load().train
    assert reads.count == 10 and "damaged; decoding again" in capsys.readouterr().err
    np.testing.assert_array_equal(images, good)
    with open(entry / cache.IMAGES, "r+b") as file:  # cut short
        file.truncate(100)
    monkeypatch.setattr(cache, "_verified", set())
    np.testing.assert_array_equal(ImageFolder(str(photos), size=[8, 8]).load().train, good)
    (entry / cache.MANIFEST).write_text("{")  # a damaged manifest
    np.testing.assert_array_equal(ImageFolder(str(photos), size=[8, 8]).load().train, good)
    assert reads.count == 30


def test_a_bad_image_leaves_no_cache_entry(cache_dir, photos):
    (photos / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        ImageFolder(str(photos), size=[8, 8]).load()
    assert not cache_dir.exists() or entries(cache_dir) == []


def test_sizes_that_differ_without_size_are_refused_as_before(cache_dir, photos):
    with pytest.raises(DataError, match="different sizes; set data.size"):
        ImageFolder(str(photos)).load()
    assert entries(cache_dir) == []


def test_two_processes_build_and_share_one_entry(cache_dir, photos):
    script = textwrap.dedent(
        f"""
        import hashlib, sys
        from tuner.vae.data.folder import ImageFolder
        images = ImageFolder({str(photos)!r}, size=[8, 8]).load().train
        print(hashlib.sha256(bytes(images)).hexdigest())
        """
    )
    env = {**os.environ, cache.CACHE_ENV: str(cache_dir)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    digests = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert digests[0] == digests[1] != ""
    assert len(entries(cache_dir)) == 1  # one entry, no temporary folder left behind


def test_uint8_rows_train_exactly_like_float32_images(tiny_config, tiny_splits):
    """8-bit training images stay uint8 until a batch is made: the same batches and the same
    training as the float32 copy that every worker used to hold."""
    from tuner.vae.batches import TrainBatches
    from tuner.vae.training import train

    assert isinstance(tiny_splits.train, D.ImageRows) and tiny_splits.train.dtype == np.uint8
    as_float = D.Splits(D.as_unit_float(tiny_splits.train), tiny_splits.val, tiny_splits.test)
    for index in (0, 3):
        np.testing.assert_array_equal(
            TrainBatches(tiny_splits.train, 64, seed=2)[index][0], TrainBatches(as_float.train, 64, seed=2)[index][0]
        )
    rows, floats = (train(tiny_config(training={"epochs": 1}), s) for s in (tiny_splits, as_float))
    assert rows.val_elbo == pytest.approx(floats.val_elbo, abs=1e-4)
    assert rows.config.model.likelihood == floats.config.model.likelihood == "discretized_logistic"


def test_a_large_decode_prints_progress_lines_in_a_log(monkeypatch, capsys):
    """Not on a terminal (tqdm's bar is off there), a folder of LOG_FROM images or more gets a
    plain line per tenth of the way, ending at 100 %; a small one prints nothing."""
    from tuner.vae.data import cache

    monkeypatch.setattr(cache, "LOG_FROM", 20)
    files = [Path(f"f{i}") for i in range(40)]
    decoded = list(cache.decode_all(files, lambda f: np.zeros((2, 2, 1), np.uint8), "photos", workers=2))
    assert len(decoded) == 40
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("decoding photos: ")]
    assert len(lines) == 10 and lines[-1].startswith("decoding photos: 40/40 images (100%")
    list(cache.decode_all(files[:10], lambda f: np.zeros((2, 2, 1), np.uint8), "photos", workers=2))
    assert "decoding photos: " not in capsys.readouterr().err
