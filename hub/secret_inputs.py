"""Form handling of secrets: write-only fields that never render a stored value.

A secret input is always rendered empty; its label says whether a value is set,
and leaving it empty keeps the stored value ("set" / "replace" in the portal).
"""

from typing import Any

from django import forms
from django.db import models


class SecretInput(forms.PasswordInput):
    """A password-style input that never renders a value, stored or submitted."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"autocomplete": "off", **(attrs or {})}, render_value=False)


class SecretFieldsFormMixin(forms.ModelForm):
    """For model forms with secret fields listed in ``Meta.secret_fields``.

    An empty submission keeps the stored secret; a value replaces it.
    """

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance: models.Model = self.instance
        for name in self.secret_fields:
            field = self.fields[name]
            field.widget = SecretInput()
            field.required = False
            is_set = bool(getattr(instance, name, ""))
            field.help_text = (
                "Set — leave empty to keep it, or type a new value to replace it."
                if is_set
                else "Not set."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.secret_fields:
            if not cleaned.get(name):
                # Nothing typed: keep what is stored (the instance still holds it).
                cleaned[name] = getattr(self.instance, name, "")
        return cleaned
