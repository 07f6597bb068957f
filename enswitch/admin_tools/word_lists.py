"""Lists of words in a JSON column (a role's privileges, a rate plan's features)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django import forms

_WORD_RE = re.compile(r"[\w.:-]+")
_SPLIT_RE = re.compile(r"[\s,]+")


class WordListWidget(forms.MultiWidget):
    """Checkboxes for the known words plus a text box for any other words."""

    def __init__(self, known: Sequence[str], attrs: dict | None = None) -> None:
        self.known = tuple(known)
        widgets = (
            forms.CheckboxSelectMultiple(choices=[(w, w) for w in self.known]),
            forms.TextInput(attrs={"size": 40, "placeholder": "other words, comma-separated"}),
        )
        super().__init__(widgets, attrs)

    def decompress(self, value: Any) -> list:
        return split_words(value, self.known)


def split_words(value: Any, known: Sequence[str]) -> list:
    """[known words present, "the other words, comma-separated"] for a stored list."""
    words = [str(w) for w in value] if isinstance(value, (list, tuple)) else []
    return [
        [w for w in known if w in words],
        ", ".join(w for w in words if w not in known),
    ]


class WordListField(forms.MultiValueField):
    """A JSON list of words, edited as checkboxes (known words) plus free words.

    Stored order: the known words in their listed order, then the others as typed,
    without duplicates.
    """

    def __init__(self, known: Sequence[str], **kwargs: Any) -> None:
        self.known = tuple(known)
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs.pop("max_length", None)
        fields = (
            forms.MultipleChoiceField(choices=[(w, w) for w in self.known], required=False),
            forms.CharField(required=False),
        )
        kwargs.setdefault("required", False)
        super().__init__(
            fields, widget=WordListWidget(self.known), require_all_fields=False, **kwargs
        )

    def prepare_value(self, value: Any) -> Any:
        # Initial data is the stored list of words; bound data is already
        # [checked words, text] (its first item is a list).
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return split_words(value, self.known)
        return value

    def compress(self, data_list: list) -> list[str]:
        checked = list(data_list[0] or []) if data_list else []
        text = (data_list[1] if len(data_list) > 1 else "") or ""
        others = [w for w in _SPLIT_RE.split(text.strip()) if w]
        bad = [w for w in others if not _WORD_RE.fullmatch(w)]
        if bad:
            raise forms.ValidationError(
                "Not a word: %(words)s. Use letters, digits, '_', '.', ':' or '-'.",
                code="invalid",
                params={"words": ", ".join(bad)},
            )
        words = [w for w in self.known if w in checked]
        for w in others:
            if w not in words:
                words.append(w)
        return words

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            new = self.clean(data)
        except forms.ValidationError:
            return True
        old = [str(w) for w in initial] if isinstance(initial, (list, tuple)) else []
        return new != old


def words_display(words: Any) -> str:
    return ", ".join(str(w) for w in words) if isinstance(words, (list, tuple)) else ""
