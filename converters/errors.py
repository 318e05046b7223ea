"""The errors a conversion raises, typed so that callers branch on the class, never on the message.

    CheckpointError               the file cannot be read, or is not the layout a format expects
      UnsupportedLayoutError      a layout recognised by name that vit_zoo does not convert
                                  (``error.layout`` names it: "big_vision MAP head", "timm LayerScale", …)
      ConversionError             a readable checkpoint that does not fit the model asked for
                                  (missing, unexpected or mis-shaped tensors; another architecture)

Every message says what was wrong, where (file, tensor, field), what was expected and what to do.
"""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not the layout it was taken for; the message says which
    file and why."""


class UnsupportedLayoutError(CheckpointError):
    """A recognised layout that vit_zoo does not convert. ``layout``: its name, e.g. "big_vision MAP head"."""

    def __init__(self, message: str, layout: str):
        super().__init__(message)
        self.layout = layout

    def __reduce__(self):  # picklable across processes, with its layout
        return type(self), (str(self), self.layout)


class ConversionError(CheckpointError):
    """The checkpoint does not fit the model; lists missing, unexpected and mis-shaped tensors."""
