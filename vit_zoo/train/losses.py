"""The loss and accuracy fine-tuning compiles: they take integer class labels and one-hot (or soft) targets
alike, so a reloaded model keeps training on either.

Fine-tuning feeds one-hot targets (soft ones after mixup / cutmix, ``vit_zoo.train.mixing``), while a
Keras user who reloads ``model.keras`` and calls ``fit(x, labels)`` usually has integer labels. Keras'
``CategoricalCrossentropy`` takes only the first and ``SparseCategoricalCrossentropy`` only the second;
``ClassificationCrossentropy`` and ``ClassificationAccuracy`` tell them apart by rank, as Keras'
``"accuracy"`` string does when it picks a metric: labels ``(B,)`` or ``(B, 1)`` of class indices
against logits ``(B, C)`` with C > 1 are turned into one-hot targets first; targets ``(B, C)`` are used
as they are. Label smoothing applies to both (smoothing needs one-hot targets, so it is applied after
the conversion). Both classes are registered (``vit_zoo>...``), so the compile state of a saved model
reloads with ``import vit_zoo``.
"""
from __future__ import annotations

import keras
from keras import ops


def class_targets(labels, logits):
    """``labels`` as float32 targets shaped like ``logits`` (B, C): integer class indices (B,) or (B, 1)
    become one-hot rows; one-hot or soft targets (B, C) are returned as they are."""
    label_shape, logit_shape = tuple(labels.shape), tuple(logits.shape)
    classes = logit_shape[-1] if logit_shape else None
    if len(label_shape) == len(logit_shape) and label_shape[-1:] == (1,) and classes not in (None, 1):
        labels, label_shape = ops.squeeze(labels, axis=-1), label_shape[:-1]  # (B, 1) class indices
    if len(label_shape) == len(logit_shape):
        return ops.cast(labels, "float32")
    if len(label_shape) == len(logit_shape) - 1 and classes is not None:
        return ops.one_hot(ops.cast(labels, "int32"), classes, dtype="float32")
    raise ValueError(f"labels of shape {label_shape} do not fit logits of shape {logit_shape}: give integer "
                     f"class indices shaped (batch,) or one-hot / soft targets shaped (batch, classes)")


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassificationCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy of logits (B, C) against integer labels (B,) / (B, 1) or targets (B, C).

    Equals ``keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=...)`` of the one-hot
    targets; ``label_smoothing`` replaces a target t by ``t * (1 - s) + s / C``.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "classification_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0 <= float(label_smoothing) < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(class_targets(y_true, y_pred), y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassificationAccuracy(keras.metrics.Accuracy):
    """Top-1 accuracy for integer labels or one-hot / soft targets: the share of examples whose top logit
    is the label's class (for soft targets: the target's largest entry)."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        targets = class_targets(ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred))
        return super().update_state(ops.argmax(targets, axis=-1), ops.argmax(y_pred, axis=-1),
                                    sample_weight=sample_weight)
