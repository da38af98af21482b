"""Render any Django form field as a U.S. Web Design System form control.

The admin pages show forms from several apps (plan_admin, directory, exchange.repository);
styling happens here, at render time, so none of those forms carries presentation.
"""

from django import forms, template
from django.utils.safestring import SafeString

register = template.Library()

_CLASSES: tuple[tuple[type[forms.Widget], str], ...] = (
    (forms.CheckboxInput, "usa-checkbox__input"),
    (forms.RadioSelect, "usa-radio__input"),
    (forms.Select, "usa-select"),
    (forms.Textarea, "usa-textarea"),
)


def _control_class(widget: forms.Widget) -> str:
    for kind, css_class in _CLASSES:
        if isinstance(widget, kind):
            return css_class
    return "usa-input"


@register.filter
def field_kind(field: forms.BoundField) -> str:
    """Return "checkbox", "radio" or "input": how _field.html lays the field out."""
    widget = field.field.widget
    if isinstance(widget, forms.CheckboxInput):
        return "checkbox"
    if isinstance(widget, forms.RadioSelect):
        return "radio"
    return "input"


@register.filter
def uswds_widget(field: forms.BoundField) -> SafeString:
    """Return the field's control with USWDS classes, its hint and error described by id."""
    css_class = _control_class(field.field.widget)
    described = [f"{field.auto_id}-hint"] if field.help_text else []
    attrs: dict[str, str | bool] = {"class": css_class}
    if field.errors:
        if css_class != "usa-checkbox__input":
            attrs["class"] = f"{css_class} {css_class}--error"
        attrs["aria-invalid"] = "true"
        described.append(f"{field.auto_id}-error")
    if described:
        attrs["aria-describedby"] = " ".join(described)
    if isinstance(field.field.widget, forms.RadioSelect):
        # Each radio is laid out by the template; the class reaches every option this way.
        field.field.widget.attrs["class"] = css_class
        return SafeString("")
    return field.as_widget(attrs=attrs)
