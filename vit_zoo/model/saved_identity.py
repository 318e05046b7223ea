"""Where a saved vit_zoo model keeps its identity record, written and read in one place (without Keras).

- ``.keras`` (``model.save``): the model's Keras config, key ``IDENTITY_KEY`` (``VisionTransformer.get_config``);
- ``.weights.h5`` (``model.save_weights``): the HDF5 attribute ``IDENTITY_KEY`` of the file's root, the
  record as JSON (``write_weights_identity``, ``read_weights_identity``).

Exports use the same name for their metadata entry (``vit_zoo.exporting.metadata``). The writer is the
model's own ``save_weights``; the reader is the ``.weights.h5`` reader of the converters
(``converters.readers.h5``), which imports it from here: the format is defined once, at the model level.
"""
from __future__ import annotations

import json
from typing import Optional

IDENTITY_KEY = "vit_zoo_identity"  # in the Keras config and as an HDF5 attribute of .weights.h5 files


def write_weights_identity(path, record: dict) -> None:
    """Add ``record`` (``Identity.to_dict()``) to the ``.weights.h5`` file at ``path`` as its attribute."""
    import h5py

    with h5py.File(path, "a") as handle:
        handle.attrs[IDENTITY_KEY] = json.dumps(record)


def read_weights_identity(handle) -> Optional[dict]:
    """The identity record (a dict) of an open ``h5py.File``, or None when it has none."""
    if IDENTITY_KEY not in handle.attrs:
        return None
    return json.loads(handle.attrs[IDENTITY_KEY])
