"""HDF5 files (``tf_model.h5``, Keras ``.weights.h5``) and the ``.keras`` archive around a ``.weights.h5``.

Keras 3 ``.weights.h5`` files group variables under class-derived paths (``layers/dense_2/vars/0``) and
keep the layer's own name in the ``vars`` group's ``name`` attribute: keys are given as
``<layer name>/vars/<index>`` (``head/vars/0``). Other datasets keep their HDF5 path.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Contents, corrupt_file
from vit_zoo.model.saved_identity import IDENTITY_KEY, read_weights_identity
KERAS_ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")


def read(path: Path) -> Contents:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError:  # h5py's "truncated file" / "file signature not found"
        raise corrupt_file(path, ".h5") from None
    entries = {}
    keras_names = _keras_layer_names(handle)

    def visit(name, node):
        if isinstance(node, h5py.Dataset):
            group, _, index = name.rpartition("/vars/")
            key = f"{keras_names[group]}/vars/{index}" if group in keras_names else name
            entries[key] = (tuple(node.shape), str(node.dtype), (lambda n=node: n[()]))

    handle.visititems(visit)
    metadata = {}
    record = read_weights_identity(handle)  # written by VisionTransformer.save_weights
    if record is not None:
        metadata[IDENTITY_KEY] = record
    return Contents(entries, metadata, handle.close)


def is_keras_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(KERAS_ARCHIVE_MEMBERS) <= set(archive.namelist())
    except zipfile.BadZipFile:  # e.g. a truncated .npz: the npz reader says what is wrong with it
        return False


def read_keras_archive(path: Path) -> Contents:
    """A ``.keras`` archive (``model.save``): its ``model.weights.h5`` read as a ``.weights.h5`` (copied out
    to a temporary file, removed on close), the identity record from its ``config.json``."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise corrupt_file(path, ".keras") from None
    with archive:
        missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in archive.namelist()]
        if missing:
            raise CheckpointError(f"{path.name} is a zip file but no Keras model archive (no {missing})")
        saved = json.loads(archive.read("config.json"))
        weights = tempfile.NamedTemporaryFile(suffix=".weights.h5", delete=False)
        with weights, archive.open("model.weights.h5") as member:
            shutil.copyfileobj(member, weights, 16 * 2**20)
    try:
        inner = read(Path(weights.name))
    except BaseException:
        os.unlink(weights.name)
        raise
    record = (saved.get("config") or {}).get(IDENTITY_KEY)
    metadata = {"keras_class": saved.get("registered_name") or saved.get("class_name")}
    if record is not None:
        metadata[IDENTITY_KEY] = record

    def close():
        inner.closer()
        os.unlink(weights.name)
    return Contents(inner.entries, metadata, close)


def _keras_layer_names(handle) -> dict:
    """``{"layers/dense_2": "head", …}`` for a Keras 3 ``.weights.h5``; {} for other h5 files."""
    import h5py

    if "layers" not in handle or "vars" not in handle:
        return {}
    names = {}
    for group_name, group in handle["layers"].items():
        if isinstance(group, h5py.Group) and "vars" in group and "name" in group["vars"].attrs:
            names[f"layers/{group_name}"] = str(group["vars"].attrs["name"])
    return names
