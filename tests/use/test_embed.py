"""embed: HDF5 contents equal the model's outputs, resuming after an interruption, unreadable files."""
import json

import h5py
import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config, write_photos
from vit_zoo.model.identity import Identity
from vit_zoo.use.embedding import embed, list_images
from vit_zoo.use.preprocessing import preprocess



@pytest.fixture(scope="module")
def model():
    return vit_zoo.build(tiny_config(), include_top=False, pooling="token")


@pytest.fixture()
def folder(tmp_path):
    root = write_photos(tmp_path / "photos", 7, lambda index: "a" if index < 4 else "b")
    (root / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "b" / "readme.txt").write_text("ignored: not an image suffix")
    return root


def read(path):
    with h5py.File(path, "r") as store:
        names = [n.decode() if isinstance(n, bytes) else n for n in store["filenames"][:]]
        return store["embeddings"][:], names, dict(store.attrs)


def expected_rows(model, root, names):
    return np.asarray(model.predict_on_batch(preprocess([str(root / n) for n in names], weights=model)))


def test_embeds_a_folder_and_warns_about_unreadable_files(model, folder, tmp_path):
    output = tmp_path / "out.h5"
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): b/broken.jpg: cannot read"):
        result = embed(model, folder, output=output, batch_size=3, tag="tiny.test", progress=False)
    vectors, names, attrs = read(output)
    assert names == [f"a/img{i}.png" for i in range(4)] + [f"b/img{i}.png" for i in range(4, 7)]
    assert vectors.shape == (7, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected_rows(model, folder, names), atol=1e-5)
    assert (attrs["model"], attrs["tag"], attrs["recipe"]) == (model.name, "tiny.test", "google")
    assert list(attrs["image_size"]) == [32, 32] and attrs["complete"]
    assert Identity.from_dict(json.loads(attrs["identity"])) == model.identity
    assert (result.total, result.added, result.skipped) == (7, 7, ["b/broken.jpg"])
    with h5py.File(output, "r") as store:
        assert [s.decode() for s in store["skipped"][:]] == ["b/broken.jpg"]


def test_resumes_after_an_interruption(model, folder, tmp_path, monkeypatch):
    output = tmp_path / "out.h5"
    real_forward, calls = model.predict_on_batch, []

    def crash_on_third_batch(pixels):
        calls.append(len(pixels))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_forward(pixels)

    monkeypatch.setattr(model, "predict_on_batch", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        embed(model, folder, output=output, batch_size=2, progress=False)
    vectors, names, attrs = read(output)
    assert len(names) == len(vectors) == 4 and not attrs["complete"]  # two finished batches are kept
    monkeypatch.setattr(model, "predict_on_batch", real_forward)

    with pytest.warns(UserWarning, match="broken.jpg"):
        result = embed(model, folder, output=output, batch_size=2, progress=False)
    vectors, names, attrs = read(output)
    assert result.added == 3 and result.total == 7 and attrs["complete"]
    assert sorted(names) == names and len(set(names)) == 7
    np.testing.assert_allclose(vectors, expected_rows(model, folder, names), atol=1e-5)


def test_a_torn_last_write_is_dropped_on_resume(model, folder, tmp_path):
    output = tmp_path / "out.h5"
    files = [folder / "a" / "img0.png", folder / "a" / "img1.png"]
    embed(model, files, output=output, progress=False)
    with h5py.File(output, "a") as store:  # a crash after growing both datasets but before naming the row
        store["embeddings"].resize(3, axis=0)
        store["filenames"].resize(3, axis=0)
    result = embed(model, files + [folder / "a" / "img2.png"], output=output, progress=False)
    vectors, names, _ = read(output)
    assert result.added == 1 and names == [str(f) for f in files] + [str(folder / "a" / "img2.png")]
    np.testing.assert_allclose(vectors[2], expected_rows(model, folder, ["a/img2.png"])[0], atol=1e-5)


def test_errors(model, folder, tmp_path):
    output = tmp_path / "out.h5"
    embed(model, [folder / "a" / "img0.png"], output=output, tag="one", progress=False)
    with pytest.raises(ValueError, match=r"holds embeddings of model .* \(tag 'one', width 32\), not of .* "
                                         r"\(tag 'two', width 32\); write to another file"):
        embed(model, [folder / "a" / "img0.png"], output=output, tag="two", progress=False)
    classifier = vit_zoo.build(tiny_config(), include_top=False)
    with pytest.raises(ValueError, match=r"outputs \(None, 17, 32\): build it with include_top=False and"):
        embed(classifier, folder, output=tmp_path / "x.h5", progress=False)
    with pytest.raises(FileNotFoundError, match="no such folder or file"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("not an image")
    message = (rf"no image files in folder '{tmp_path / 'empty'}' \(searched it and its sub-folders for "
               rf"\.jpg, \.jpeg, \.png, ")
    with pytest.raises(ValueError, match=message):
        embed(model, tmp_path / "empty", output=tmp_path / "empty.h5", progress=False)
    assert not (tmp_path / "empty.h5").exists()
    with pytest.raises(ValueError, match="no image files given"):
        list_images([tmp_path / "empty"])


@pytest.mark.parametrize("name, pooling, width", [("dinov2-reg4", "token", 32), ("dinov2-token-mean", "token-mean", 64),
                                                  ("deit-distilled", "token", 32)])
def test_family_embeddings_are_the_pooled_parts(name, pooling, width, folder, tmp_path):
    """A DINOv2 model embeds its class token (or class token ‖ patch mean), a distilled DeiT its class token:
    the rows equal those parts of the last block, normed, split off by feature_extractor."""
    from conftest import to_numpy
    from family_models import family_config, randomised
    from vit_zoo.use.features import feature_extractor

    config = family_config(name)
    classifier = randomised(vit_zoo.build(config))
    model = vit_zoo.build(config, include_top=False, pooling=pooling)
    model.set_weights(classifier.get_weights()[:len(model.weights)])  # the same trunk, no head(s)
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = embed(model, folder, output=tmp_path / f"{name}.h5", progress=False)
    vectors, names, attrs = read(result.path)
    assert vectors.shape == (7, width)
    parts = to_numpy(feature_extractor(model, -1, output="parts", norm=True)(
        preprocess([str(folder / n) for n in names], weights=model)))
    expected = parts["class"] if pooling == "token" else \
        np.concatenate([parts["class"], parts["patches"].mean(axis=(1, 2))], axis=-1)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert Identity.from_dict(json.loads(attrs["identity"])).config == config
