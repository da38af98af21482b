"""Render any Django form field as a U.S. Web Design System form control.

The admin pages show forms from several apps (plan_admin, directory, exchange.repository);
styling happens here, at render time, so none of those forms carries presentation.
"""

from django import forms, template
from django.utils.safestring import SafeString

from hub.uswds import MARKED_BY_GROUP, uswds_control_class

register = template.Library()


@register.filter
def field_kind(field: forms.BoundField) -> str:
    """Return "checkbox", "checkboxes", "radio" or "input": how _field.html lays the field out."""
    widget = field.field.widget
    if isinstance(widget, forms.CheckboxInput):
        return "checkbox"
    if isinstance(widget, forms.CheckboxSelectMultiple):
        return "checkboxes"
    if isinstance(widget, forms.RadioSelect):
        return "radio"
    return "input"


@register.filter
def uswds_widget(field: forms.BoundField) -> SafeString:
    """Return the field's control with USWDS classes, its hint and error described by id."""
    css_class = uswds_control_class(field.field.widget)
    described = [f"{field.auto_id}-hint"] if field.help_text else []
    attrs: dict[str, str | bool] = {"class": css_class}
    if field.errors:
        if not isinstance(field.field.widget, MARKED_BY_GROUP):
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
