"""``vit_zoo.evaluate``: counts against an independent NumPy computation, the folder layouts and
ground-truth formats it accepts, the published top-1 line and the results table."""
import csv

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config

NAMES = ("cat", "dog", "fox")


def tiny_classifier(labels=NAMES, **identity):
    import vit_zoo
    from vit_zoo.model.identity import Identity

    config = tiny_config(num_classes=len(labels) if isinstance(labels, tuple) else 1000)
    return vit_zoo.build(config, identity=Identity(config, labels=labels, **identity))


def write_images(folder, count, seed):
    """``count`` random 32 x 32 PNGs (the model's input size: the "google" squash-resize leaves them as they
    are), returned as arrays in file-name order."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"img_{index:03d}.png")
    return pixels


def expected_counts(model, pixels, labels):
    """top-1, top-k (k = min(5, classes)) and mean cross-entropy, in NumPy from the model's logits."""
    logits = np.asarray(model.predict(pixels.astype("float32"), verbose=0), np.float64)
    k = min(5, logits.shape[1])
    top1 = np.mean(np.argmax(logits, axis=1) == labels)
    topk = np.mean([label in np.argsort(-row)[:k] for row, label in zip(logits, labels)])
    log_z = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), axis=1)) + logits.max(1)
    return top1, topk, np.mean(log_z - logits[np.arange(len(labels)), labels])


def test_class_folders_give_the_counts_of_an_independent_computation(tmp_path):
    """Seven classes, so that top-5 is not trivially 1.0."""
    import vit_zoo

    names = NAMES + ("owl", "elk", "bee", "ant")
    model = tiny_classifier(labels=names)
    pixels, labels = [], []
    for index, name in enumerate(names):
        pixels.append(write_images(tmp_path / name, 2 + index % 3, seed=index))
        labels += [index] * (2 + index % 3)
    pixels, labels = np.concatenate(pixels), np.asarray(labels)
    result = vit_zoo.evaluate(model, tmp_path, batch_size=4, workers=2, progress=False)
    top1, topk, loss = expected_counts(model, pixels, labels)
    assert result["examples"] == 20 and result["k"] == 5
    assert result["top1"] == pytest.approx(top1, abs=1e-12) and result["top5"] == pytest.approx(topk, abs=1e-12)
    assert topk < 1.0  # the top-5 count is really exercised: some images miss it
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["images_per_second"] > 0 and result["image_size"] == [32, 32]


def test_a_flat_folder_with_a_ground_truth_file(tmp_path):
    import vit_zoo

    model = tiny_classifier()
    pixels = write_images(tmp_path / "val", 7, seed=3)
    labels = np.array([2, 0, 1, 1, 0, 2, 2])
    (tmp_path / "truth.txt").write_text("\n".join(map(str, labels)) + "\n")
    result = vit_zoo.evaluate(model, tmp_path / "val", ground_truth=tmp_path / "truth.txt", progress=False)
    top1, _, loss = expected_counts(model, pixels, labels)
    assert result["examples"] == 7 and result["top1"] == pytest.approx(top1, abs=1e-12)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    # Caffe's val.txt ("FILE LABEL", any order) and class names give the same labels
    rows = [f"img_{i:03d}.png {NAMES[label]}" for i, label in reversed(list(enumerate(labels)))]
    (tmp_path / "val.txt").write_text("\n".join(rows))
    assert vit_zoo.evaluate(model, tmp_path / "val", ground_truth=tmp_path / "val.txt", progress=False)["top1"] \
        == result["top1"]
    (tmp_path / "short.txt").write_text("0\n1\n")
    with pytest.raises(ValueError, match="has 2 labels for 7 images; expected one line per image"):
        vit_zoo.evaluate(model, tmp_path / "val", ground_truth=tmp_path / "short.txt", progress=False)
    (tmp_path / "one_based.txt").write_text("\n".join(["3"] + ["1"] * 6))
    with pytest.raises(ValueError, match="class index 3 is outside 0..2; 1-based ILSVRC2012_IDs?"):
        vit_zoo.evaluate(model, tmp_path / "val", ground_truth=tmp_path / "one_based.txt", progress=False)


def test_synset_folders_match_an_imagenet_model_and_unknown_folders_are_named(tmp_path):
    import vit_zoo

    model = tiny_classifier(labels="imagenet1k")
    write_images(tmp_path / "n01440764", 2, seed=0)  # class 0, tench
    write_images(tmp_path / "n01443537", 3, seed=1)  # class 1, goldfish
    result = vit_zoo.evaluate(model, tmp_path, progress=False)
    top1, topk, _ = expected_counts(model, np.concatenate([
        np.asarray([np.asarray(Image.open(p)) for p in sorted((tmp_path / d).iterdir())])
        for d in ("n01440764", "n01443537")]), np.array([0, 0, 1, 1, 1]))
    assert result["examples"] == 5 and result["top1"] == top1 and result["top5"] == topk and result["k"] == 5
    write_images(tmp_path / "n99999999", 1, seed=2)
    with pytest.raises(ValueError, match=r"1 of the 3 class folders .* match none of the model's 1000 class "
                                         r"names or WordNet ids \(n01440764\): folders 'n99999999'; class names "
                                         r"'tench, Tinca tinca', 'goldfish, Carassius auratus'"):
        vit_zoo.evaluate(model, tmp_path, progress=False)
    with pytest.raises(ValueError, match="class names are unknown .* pass labels="):
        vit_zoo.evaluate(tiny_classifier(labels=None), tmp_path, progress=False)


def test_results_rows_and_the_published_top1_line(tmp_path):
    import vit_zoo
    from vit_zoo.model.identity import Provenance
    from vit_zoo.use.evaluation import format_report

    key = "vit-base-16.augreg-in21k-ft-in1k-224"  # published top-1 84.534 (timm's results table)
    model = tiny_classifier(labels="imagenet1k", provenance=Provenance(format="google-npz", manifest_key=key))
    write_images(tmp_path / "data" / "n01440764", 2, seed=0)
    results = tmp_path / "results.csv"
    first = vit_zoo.evaluate(model, tmp_path / "data", progress=False, results=results)
    vit_zoo.evaluate(model, tmp_path / "data", progress=False, results=results)
    assert first["published_top1"] == pytest.approx(0.84534)
    lines = format_report(first)
    assert lines[-1] == (f"published top-1 84.534% ({key}); measured - published = "
                         f"{100 * first['top1'] - 84.534:+.3f} points")
    rows = list(csv.reader(results.read_text().splitlines()))
    assert rows[0] == ["model", "tag", "img_size", "top1", "top5", "images_per_second", "examples"]
    assert len(rows) == 3 and rows[1][:5] == ["vit-base-16", "augreg-in21k-ft-in1k-224", "32",
                                              f"{100 * first['top1']:.3f}", f"{100 * first['top5']:.3f}"]
    assert rows[1][6] == "2"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a vit-zoo results table"):
        vit_zoo.evaluate(model, tmp_path / "data", progress=False, results=tmp_path / "other.csv")


def test_evaluation_uses_the_weights_own_preprocessing(tmp_path):
    """A "timm" identity (shorter side to size / 0.9, bicubic, centre crop) on a non-square image gives the
    logits of exactly that transform."""
    import vit_zoo
    from vit_zoo.model.identity import Preprocessing
    from vit_zoo.use.evaluation import evaluate_examples

    model = tiny_classifier(preprocessing=Preprocessing("timm", 0.9, "bicubic"))
    image = np.random.default_rng(5).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    result = evaluate_examples(model, [(image, 1)], 1)
    pixels = vit_zoo.preprocess(image, recipe="timm", crop_pct=0.9, image_size=32)
    logits = np.asarray(model.predict(pixels, verbose=0), np.float64)[0]
    assert result["loss"] == pytest.approx(np.log(np.sum(np.exp(logits))) - logits[1], rel=1e-5)


def test_unreadable_images_are_skipped_named_and_counted_and_strict_stops_at_the_first(tmp_path):
    import vit_zoo
    from vit_zoo.use.images import ImageReadError

    model = tiny_classifier()
    cat, dog = write_images(tmp_path / "cat", 2, seed=1), write_images(tmp_path / "dog", 3, seed=2)
    broken = tmp_path / "dog" / "img_001.png"
    broken.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) of 5; scored 4:\n  .*img_001.png: "):
        result = vit_zoo.evaluate(model, tmp_path, batch_size=2, workers=2, progress=False)
    assert [item for item, _ in result["skipped"]] == [str(broken)]
    assert "cannot read" in result["skipped"][0][1] and result["examples"] == 4
    top1, topk, loss = expected_counts(model, np.concatenate([cat, dog[[0, 2]]]), np.array([0, 0, 1, 1]))
    assert result["top1"] == pytest.approx(top1, abs=1e-12) and result["loss"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ImageReadError, match="img_001.png"):
        vit_zoo.evaluate(model, tmp_path, batch_size=2, progress=False, strict=True)
    for path in (tmp_path / "cat").iterdir():
        path.write_bytes(b"")
    (tmp_path / "dog").rename(tmp_path / ".dog")  # hidden: not a class folder
    with pytest.raises(ValueError, match=r"none of the 2 images could be read; the first: .*cat.img_000.png: "):
        vit_zoo.evaluate(model, tmp_path, batch_size=2, progress=False)


def test_evaluation_prepares_each_image_as_predict_does_from_any_iterable(tmp_path):
    """A "hf" identity (Pillow bilinear squash) on a non-square image: the loss of ``evaluate_examples``
    over a generator of PNG bytes is -log of the label's probability from ``predict`` on the file."""
    import io

    import vit_zoo
    from vit_zoo.use.evaluation import evaluate_examples
    from vit_zoo.model.identity import Preprocessing

    model = tiny_classifier(preprocessing=Preprocessing("hf", 1.0, "bilinear"))
    images = np.random.default_rng(6).integers(0, 256, (3, 40, 70, 3), dtype=np.uint8)
    files, encoded = [], []
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{index}.png")
        files.append(tmp_path / f"{index}.png")
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    labels = [2, 0, 1]
    result = evaluate_examples(model, ((data, label) for data, label in zip(encoded, labels)), batch_size=2)
    predicted = vit_zoo.predict(model, files, top=3)
    probabilities = [dict((index, p) for index, _, p in row)[label] for row, label in zip(predicted, labels)]
    assert result["examples"] == 3
    assert result["loss"] == pytest.approx(-np.mean(np.log(probabilities)), rel=1e-5)
