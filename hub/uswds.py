"""The U.S. Web Design System's class for each kind of form control, for every portal's forms."""

from django import forms

_CONTROL_CLASSES: tuple[tuple[type[forms.Widget], str], ...] = (
    (forms.CheckboxInput, "usa-checkbox__input"),
    (forms.RadioSelect, "usa-radio__input"),
    (forms.Select, "usa-select"),
    (forms.Textarea, "usa-textarea"),
    (forms.FileInput, "usa-file-input"),
)
# USWDS marks these in error on their group and label, not with an ``--error`` class.
MARKED_BY_GROUP = (forms.CheckboxInput, forms.RadioSelect)


def uswds_control_class(widget: forms.Widget) -> str:
    """Return the USWDS class of ``widget``'s control; text-like inputs are ``usa-input``."""
    for kind, css_class in _CONTROL_CLASSES:
        if isinstance(widget, kind):
            return css_class
    return "usa-input"
