"""Image search: ``embed`` a folder with an image tower (L2-normalised rows), then ``similar`` ranks it by cosine
exactly as a brute-force NumPy ranking does, streams the index in chunks, and refuses another model's index."""
import h5py
import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config, write_photos
from vit_zoo.use.embedding import embed
from vit_zoo.use.features import pooled_features
from vit_zoo.use.preprocessing import preprocess
from vit_zoo.use.search import similar

pytestmark = pytest.mark.filterwarnings("ignore:skipped .* unreadable:UserWarning")

TOWERS = {"clip": dict(pre_norm=True, patch_bias=False, gelu="quick", layer_norm_epsilon=1e-5, projection_size=12,
                       num_classes=0),
          "siglip": dict(class_token=False, pooling="map", gelu="tanh", num_classes=0)}


def tower(kind, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return vit_zoo.build(tiny_config().replace(**TOWERS[kind]))


@pytest.fixture()
def folder(tmp_path):
    return write_photos(tmp_path / "photos", 9, lambda index: "a" if index < 5 else "b")


def _brute_force(model, folder, query, names):
    vectors = np.asarray(model.predict_on_batch(preprocess([str(folder / n) for n in names], weights=model)))
    q = np.asarray(model.predict_on_batch(preprocess([str(query)], weights=model)))[0]
    cosine = vectors @ q / np.linalg.norm(vectors, axis=1) / np.linalg.norm(q)
    order = np.argsort(-cosine, kind="stable")
    return [names[i] for i in order], cosine[order]


@pytest.mark.parametrize("kind", list(TOWERS))
def test_a_tower_s_index_ranks_like_brute_force_cosine_and_finds_each_image_itself(kind, folder, tmp_path):
    model = tower(kind)
    index = tmp_path / "index.h5"
    result = embed(model, folder, output=index, batch_size=4, progress=False)  # 3 batches: streamed writes
    assert result.total == 9
    with h5py.File(index, "r") as store:
        rows, names = store["embeddings"][:], [n.decode() for n in store["filenames"][:]]
        assert bool(store.attrs["l2_normalized"])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    query = folder / "b" / "img6.png"
    found = similar(model, [query], index, top=5, chunk_rows=2)[0]  # merged over 5 chunks of the index
    expected_names, expected_scores = _brute_force(model, folder, query, names)
    assert found[0][0] == "b/img6.png" and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [n for n, _ in found] == expected_names[:5]
    np.testing.assert_allclose([s for _, s in found], expected_scores[:5], atol=1e-5)


def test_a_classic_vit_index_works_unnormalised(folder, tmp_path):
    model = pooled_features(vit_zoo.build(tiny_config(), include_top=False, pooling="token"))
    index = tmp_path / "index.h5"
    embed(model, folder, output=index, progress=False)
    with h5py.File(index, "r") as store:
        assert not bool(store.attrs["l2_normalized"])
    found = similar(model, [folder / "a" / "img2.png"], index, top=3)[0]
    assert found[0][0] == "a/img2.png" and len(found) == 3


def test_a_query_from_another_model_is_refused_naming_both(folder, tmp_path):
    index = tmp_path / "index.h5"
    embed(tower("clip"), folder, output=index, progress=False)
    with pytest.raises(ValueError, match="embeddings of different models are not comparable"):
        similar(tower("siglip"), [folder / "a" / "img0.png"], index)


def test_missing_and_foreign_indexes_and_bad_top_are_refused(folder, tmp_path):
    model = tower("clip")
    with pytest.raises(FileNotFoundError, match="write one with `vit-zoo embed DIR -o"):
        similar(model, [folder / "a" / "img0.png"], tmp_path / "none.h5")
    with h5py.File(tmp_path / "other.h5", "w") as store:
        store.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="is not an embedding index"):
        similar(model, [folder / "a" / "img0.png"], tmp_path / "other.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as store:
        store.create_dataset("embeddings", shape=(0, 12), dtype="float32")
        store.create_dataset("filenames", shape=(0,), dtype=h5py.string_dtype("utf-8"))
    with pytest.raises(ValueError, match="holds no embeddings yet"):
        similar(model, [folder / "a" / "img0.png"], tmp_path / "empty.h5")
    with pytest.raises(ValueError, match="top must be at least 1"):
        similar(model, [folder / "a" / "img0.png"], tmp_path / "other.h5", top=0)


def test_cli_embed_then_similar_with_a_saved_tower(folder, tmp_path, capsys):
    from vit_zoo import cli

    path = tmp_path / "tower.keras"
    tower("siglip").save(path)
    assert cli.main(["embed", str(folder), "--weights", str(path), "-o", str(tmp_path / "i.h5"), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["similar", str(folder / "a" / "img3.png"), "--weights", str(path), "--index",
                     str(tmp_path / "i.h5"), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("img3.png") and lines[1].startswith("  1. 1.0000  a/img3.png") and len(lines) == 3
