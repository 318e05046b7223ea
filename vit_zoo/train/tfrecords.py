"""TFRecord files of ``tf.train.Example`` records as a random-access fine-tuning source.

One pass over the files records where each record starts and reads its label (and class name, where
given); training then reads any record by its offset. So a TFRecord split is shuffled with a full
permutation per epoch and resumed exactly without replaying the records before the resume point, like an
image folder, and its images are decoded by the same Pillow decoder (``vit_zoo.use.images``).

Accepted features (the TF-slim / ImageNet-TFRecord layout, or TFDS' names):
    image        ``image/encoded`` or ``image``: one encoded image (JPEG, PNG, ...), bytes
    label        ``image/class/label`` or ``label``: int64 class index
    class name   ``image/class/text`` (optional): bytes, the same for every record of a label
Records are framed as TFRecord writes them (uint64 length, uint32 masked CRC-32C of the length, data,
uint32 masked CRC-32C of the data), uncompressed. Both CRCs are checked in the indexing pass, and the data
CRC again whenever a record is read for training (``vit_zoo.train.crc32c``, ~1 ms per 100 KB record); a
mismatch is an error naming the file, the record and its byte offset.
Parsing ``tf.train.Example`` needs the TensorFlow package (any Keras backend).
"""
from __future__ import annotations

import glob
import os
import struct
from typing import List, Optional, Tuple

import numpy as np

from vit_zoo.train.crc32c import masked_crc32c

IMAGE_KEYS = ("image/encoded", "image")
LABEL_KEYS = ("image/class/label", "label")
TEXT_KEY = "image/class/text"
_HEADER = struct.Struct("<QI")  # record length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data


class RecordIndex:
    """Where each record of some TFRecord files starts: ``image_bytes(i)`` reads record i's image."""

    def __init__(self, files: List[str], spans: List[Tuple[int, int, int]], image_key: str):
        self.files, self.spans, self.image_key = files, spans, image_key

    def __len__(self) -> int:
        return len(self.spans)

    def image_bytes(self, index: int) -> bytes:
        file_index, offset, length = self.spans[index]
        path = self.files[file_index]
        with open(path, "rb") as handle:
            handle.seek(offset)
            framed = handle.read(length + _FOOTER.size)
        data = framed[:length]
        _check_crc(path, f"record {index} of the split", offset - _HEADER.size, "data", data,
                   _FOOTER.unpack(framed[length:])[0] if len(framed) == length + _FOOTER.size else None)
        return _example(data).features.feature[self.image_key].bytes_list.value[0]


def tfrecord_source(data, argument: str):
    """A ``Source`` (kind ``"tfrecord"``) of the records in ``data`` (a path, glob or list of paths)."""
    from vit_zoo.train.data import Source

    files = sorted(glob.glob(os.fspath(data))) if not isinstance(data, list) else [os.fspath(f) for f in data]
    if not files:
        raise FileNotFoundError(f"{argument}: no such folder or TFRecord file(s): {data!r}; expected an image "
                                f"folder (one sub-folder per class) or .tfrecord files")
    spans, labels, names, keys = [], [], {}, None
    for file_index, path in enumerate(files):
        for offset, record in _records(path):
            example = _example(record)
            keys = keys or _feature_keys(example, path)
            features = example.features.feature
            label = int(features[keys[1]].int64_list.value[0])
            if TEXT_KEY in features:
                name = features[TEXT_KEY].bytes_list.value[0].decode("utf-8")
                if names.setdefault(label, name) != name:
                    raise ValueError(f"{path}: label {label} is named both {names[label]!r} and {name!r} "
                                     f"({TEXT_KEY}); each class index needs one name")
            spans.append((file_index, offset, len(record)))
            labels.append(label)
    if not spans:
        raise ValueError(f"{argument}: the TFRecord file(s) {files[:3]} hold no records")
    where = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0:
        raise ValueError(f"{where}: negative label {int(labels.min())} in {keys[1]}")
    return Source("tfrecord", RecordIndex(files, spans, keys[0]), labels, len(spans), where,
                  _class_names(names, int(labels.max()) + 1, where))


def _class_names(names: dict, count: int, where: str) -> Optional[List[str]]:
    if not names:
        return None
    missing = [label for label in range(count) if label not in names]
    if missing:
        raise ValueError(f"{where}: {TEXT_KEY} names some classes but not {missing[:5]}; give every record "
                         f"its class name, or none (and pass class_names=)")
    return [names[label] for label in range(count)]


def _records(path: str):
    """(offset of the data, data) of every record of one uncompressed TFRecord file, both CRCs checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            raise ValueError(f"'{path}' is GZIP-compressed; decompress it first (gunzip -c x.tfrecord.gz > "
                             f"x.tfrecord): records are read by their offsets")
        handle.seek(0)
        position, number = 0, 0
        while position < size:
            header = handle.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise ValueError(f"'{path}' ends inside a record header at byte {position}; is it complete?")
            length, length_crc = _HEADER.unpack(header)
            _check_crc(path, f"record {number}", position, "length", header[:8], length_crc)
            start = position + _HEADER.size
            if start + length + _FOOTER.size > size:
                raise ValueError(f"'{path}': the record at byte {position} claims {length} bytes, past the end "
                                 f"of the file ({size} bytes); is it a complete, uncompressed TFRecord file?")
            data = handle.read(length)
            _check_crc(path, f"record {number}", position, "data", data, _FOOTER.unpack(handle.read(_FOOTER.size))[0])
            yield start, data
            position, number = start + length + _FOOTER.size, number + 1


def _check_crc(path: str, record: str, position: int, part: str, data: bytes, stored: Optional[int]) -> None:
    """Refuse a record whose ``part`` ("length" or "data") does not match the masked CRC-32C stored after it."""
    computed = masked_crc32c(data)
    if stored != computed:
        found = "is missing" if stored is None else f"is 0x{stored:08x}, the {part} gives 0x{computed:08x}"
        raise ValueError(f"'{path}': {record} (at byte {position}) is corrupt: the CRC of its {part} {found}; "
                         f"the file is damaged (re-create or re-download it)")


def _example(data: bytes):
    try:
        from tensorflow.core.example import example_pb2
    except ImportError:
        raise ImportError("reading TFRecord files needs the tensorflow package (it defines tf.train.Example): "
                          "pip install tensorflow, or pass an image folder or (images, labels) arrays") from None
    return example_pb2.Example.FromString(data)


def _feature_keys(example, path: str) -> Tuple[str, str]:
    found = set(example.features.feature.keys())
    image = next((key for key in IMAGE_KEYS if key in found), None)
    label = next((key for key in LABEL_KEYS if key in found), None)
    if image is None or label is None:
        raise ValueError(f"'{path}': a tf.train.Example needs an image feature ({' or '.join(IMAGE_KEYS)}) and "
                         f"a label feature ({' or '.join(LABEL_KEYS)}); found {sorted(found)}")
    return image, label
