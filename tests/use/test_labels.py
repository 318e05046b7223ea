"""Label lists (checked against known ImageNet indices) and decode_predictions."""
import numpy as np
import pytest

from vit_zoo.use.labels import (decode_predictions, imagenet1k_labels, imagenet1k_wnids, imagenet21k_labels,
                            imagenet21k_wnids)

# Known ILSVRC-2012 classes (index → WordNet id, first lemma), as in every ImageNet class index
# (e.g. Keras' imagenet_class_index.json; timm's imagenet_synsets.txt).
KNOWN_1K = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    207: ("n02099601", "golden retriever"),
    281: ("n02123045", "tabby"),
    285: ("n02124075", "Egyptian cat"),
    652: ("n03763968", "military uniform"),
    999: ("n15075141", "toilet tissue"),
}


def test_imagenet1k_order_and_names():
    names, wnids = imagenet1k_labels(), imagenet1k_wnids()
    assert len(names) == len(wnids) == 1000 == len(set(wnids))
    for index, (wnid, first_lemma) in KNOWN_1K.items():
        assert wnids[index] == wnid
        assert names[index].split(", ")[0] == first_lemma
    assert names[0] == "tench, Tinca tinca"
    assert wnids == sorted(wnids)  # the ILSVRC class index is sorted by WordNet id


def test_imagenet21k_order_and_names():
    names, wnids = imagenet21k_labels(), imagenet21k_wnids()
    assert len(names) == len(wnids) == 21843 == len(set(wnids))
    assert (wnids[0], names[0]) == ("n00004475", "organism, being")
    assert (wnids[-1], names[-1]) == ("n15102894", "knothole")
    assert wnids == sorted(wnids)  # Google's ImageNet-21k classes are sorted by WordNet id
    lemma = dict(zip(wnids, names))  # the two lists agree where they share a synset
    shared = [(w, n) for w, n in zip(imagenet1k_wnids(), imagenet1k_labels()) if w in lemma]
    assert len(shared) > 990 and all(lemma[w] == n for w, n in shared)


def test_decode_predictions_softmax_order_and_names():
    logits = np.full((2, 1000), -1.0, "float32")
    logits[0, [207, 1, 0]] = [5.0, 4.0, 3.0]
    logits[1, 999] = 2.0
    decoded = decode_predictions(logits, top=3)
    expected = np.exp(logits[0].astype(np.float64) - logits[0].max())
    expected /= expected.sum()
    assert [(i, n) for i, n, _ in decoded[0]] == [(207, "golden retriever"), (1, "goldfish, Carassius auratus"),
                                                (0, "tench, Tinca tinca")]
    np.testing.assert_allclose([p for *_, p in decoded[0]], expected[[207, 1, 0]], rtol=1e-6)
    assert decoded[1][0][:2] == (999, "toilet tissue, toilet paper, bathroom tissue")
    assert decoded[1][1][0] == 0  # ties keep the lower class index first


def test_decode_predictions_inputs():
    probabilities = np.zeros(21843, "float32")
    probabilities[[5, 21842]] = [0.25, 0.75]
    decoded = decode_predictions(probabilities, labels="imagenet21k", top=2, from_logits=False)
    assert decoded == [[(21842, "knothole", 0.75), (5, imagenet21k_labels()[5], 0.25)]]
    import tensorflow as tf
    custom = decode_predictions(tf.constant([[0.0, 3.0, 1.0]]), labels=["cat", "dog", "eel"], top=1)
    assert custom[0][0][:2] == (1, "dog")


def test_decode_predictions_of_a_models_own_output():
    """model(x) as the backend returns it (on PyTorch a tensor that tracks gradients) decodes like NumPy;
    the scores are the softmax computed here."""
    import vit_zoo
    from conftest import random_images, tiny_config, to_numpy

    model = vit_zoo.build(tiny_config(num_classes=3))
    head = model.get_layer("head")
    head.bias.assign(np.array([0.0, 2.0, 1.0], "float32"))  # distinct scores, whatever the random weights
    outputs = model(random_images(np.random.default_rng(0), 2, 32))
    logits = to_numpy(outputs).astype(np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    decoded = decode_predictions(outputs, labels=["cat", "dog", "eel"], top=3)
    for row, expected in zip(decoded, probabilities):
        assert [index for index, _, _ in row] == list(np.argsort(-expected))
        np.testing.assert_allclose([score for _, _, score in row], np.sort(expected)[::-1], rtol=1e-5)


def test_decode_predictions_errors():
    with pytest.raises(ValueError, match=r"logits have 21843 classes but labels 'imagenet1k' has 1000.*"
                                         r"labels='imagenet21k'"):
        decode_predictions(np.zeros((1, 21843)))
    with pytest.raises(ValueError, match=r"10 classes but labels \(a list\) has 3"):
        decode_predictions(np.zeros((1, 10)), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"shape \(batch, classes\)"):
        decode_predictions(np.zeros((1, 2, 1000)))
    with pytest.raises(ValueError, match="top must be an integer from 1 to 1000"):
        decode_predictions(np.zeros((1, 1000)), top=0)
    with pytest.raises(ValueError, match=r"samples \[1\] contain NaN"):
        decode_predictions(np.stack([np.zeros(1000), np.full(1000, np.nan)]))
    with pytest.raises(ValueError, match="unknown label set 'imagenet22k'"):
        decode_predictions(np.zeros((1, 1000)), labels="imagenet22k")
    with pytest.warns(UserWarning, match="head is probably all zeros"):
        decode_predictions(np.zeros((1, 1000)))


def test_read_label_file(tmp_path):
    from vit_zoo.use.labels import read_label_file
    path = tmp_path / "labels.txt"
    path.write_text("circle\n  square \r\nring\n\n\n", encoding="utf-8")
    assert read_label_file(path) == ("circle", "square", "ring")
    assert read_label_file(path, num_classes=3) == ("circle", "square", "ring")
    with pytest.raises(ValueError, match=rf"labels file '{path}' has 3 class names \(one per line\), but the "
                                         rf"model's head has 4 classes; give one name per class, in class-index"):
        read_label_file(path, num_classes=4)
    path.write_text("circle\n\nring\n")
    with pytest.raises(ValueError, match=r"has empty lines inside \(line 2\)"):
        read_label_file(path)
    path.write_text("\n \n")
    with pytest.raises(ValueError, match="holds no class names"):
        read_label_file(path)
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(invalid continuation byte at byte 3\)"):
        read_label_file(path)
    with pytest.raises(FileNotFoundError, match="labels file '.*missing.txt' not found"):
        read_label_file(tmp_path / "missing.txt")
