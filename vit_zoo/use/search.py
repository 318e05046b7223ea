"""Image search over an embedding index: the HDF5 file ``vit_zoo.use.embedding.embed`` writes
(``vit-zoo embed DIR -o index.h5``), queried with ``similar`` (``vit-zoo similar QUERY --index index.h5``).

The index records the identity of the model that embedded it (config, preprocessing, provenance); a query is
embedded by the model given here and refused unless that model's identity is the index's, so two embedding
spaces are never compared. Similarity is the cosine; the index is read in chunks of ``chunk_rows`` rows, so
memory stays (chunk_rows + top) x width floats whatever the index holds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

from vit_zoo.model.identity import identity_of
from vit_zoo.use.preprocessing import preprocess


def similar(model, queries: Sequence[Union[str, Path]], index: Union[str, Path], top: int = 5,
            chunk_rows: int = 4096) -> List[List[Tuple[str, float]]]:
    """For each query image, the ``top`` indexed images nearest to it: ``[[(file name, cosine), ...], ...]``,
    most similar first (file names as the index records them, relative to its folder).

    Args:
        model: the model the index was embedded with (the same pooled or tower model ``embed`` used).
        queries: image paths.
        index: an HDF5 file written by ``embed``.
    Raises:
        FileNotFoundError for a missing index; ValueError for a file that is no embedding index, an index
        another model wrote (both identities named), or ``top`` < 1.
    """
    import h5py

    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    index = Path(index)
    if not index.is_file():
        raise FileNotFoundError(f"no embedding index '{index}': write one with `vit-zoo embed DIR -o {index}`")
    with h5py.File(index, "r") as store:
        if "embeddings" not in store or "filenames" not in store:
            raise ValueError(f"'{index}' is not an embedding index (no 'embeddings' and 'filenames' datasets); "
                             f"write one with `vit-zoo embed DIR -o FILE`")
        if not min(store["embeddings"].shape[0], store["filenames"].shape[0]):
            raise ValueError(f"'{index}' holds no embeddings yet (an interrupted or failed `vit-zoo embed`): run "
                             f"that command again to fill it")
        _check_same_model(model, store, index)
        query = _unit_rows(np.asarray(model.predict_on_batch(preprocess([str(q) for q in queries],
                                                                           weights=model)), np.float32))
        embeddings, names = store["embeddings"], store["filenames"]
        rows = min(embeddings.shape[0], names.shape[0])
        best_scores = np.full((len(query), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(query), 0), np.int64)
        for start in range(0, rows, chunk_rows):
            scores = query @ _unit_rows(np.asarray(embeddings[start:start + chunk_rows], np.float32)).T
            best_scores = np.concatenate([best_scores, scores], axis=1)
            best_rows = np.concatenate([best_rows, np.arange(start, start + scores.shape[1])[None].repeat(
                len(query), 0)], axis=1)
            keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :top]
            best_scores = np.take_along_axis(best_scores, keep, 1)
            best_rows = np.take_along_axis(best_rows, keep, 1)
        return [[(_name(names[int(r)]), float(s)) for r, s in zip(row_ids, row_scores)]
                for row_ids, row_scores in zip(best_rows, best_scores)]


def _check_same_model(model, store, index: Path) -> None:
    identity = identity_of(model)
    recorded = store.attrs.get("identity") or ""
    ours = json.dumps(identity.to_dict()) if identity is not None else ""
    if not recorded or not ours or json.loads(recorded) != json.loads(ours) \
            or store["embeddings"].shape[1] != model.output_shape[-1]:
        raise ValueError(f"'{index}' was embedded by {_describe(recorded, store.attrs.get('model'))}, and the "
                         f"query model is {_describe(ours, model.name)}: embeddings of different models are not "
                         f"comparable. Query with the model (and weights) the index was built with, or embed the "
                         f"folder again with this one")


def _describe(identity_json: str, name) -> str:
    if not identity_json:
        return f"{name!r} (no identity recorded)"
    provenance = json.loads(identity_json).get("provenance", {})
    weights = provenance.get("manifest_key") or provenance.get("source")
    return f"{name!r} (weights {weights!r}, format {provenance.get('format')!r})"


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _name(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
