"""The directory's search and onboarding forms refuse what cannot be used, in plain words."""

import pytest

from directory.forms import DirectorySearchForm, OnboardingRequestForm


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"organization_name": "X Health", "npi": "1234567890"}, "check digit is wrong"),
        ({"organization_name": "X Health", "state": "North"}, "two-letter code"),
        ({"organization_name": ""}, "This field is required"),
        ({"organization_name": "X Health", "contact_email": "nope"}, "valid email"),
    ],
)
def test_a_bad_onboarding_request_is_refused_with_a_message(
    data: dict[str, str], message: str
) -> None:
    form = OnboardingRequestForm(data=data)
    assert not form.is_valid()
    assert message in str(form.errors)


def test_an_onboarding_request_names_the_state_in_capitals() -> None:
    form = OnboardingRequestForm(data={"organization_name": "Prairie Health Co-op", "state": "nd"})
    assert form.is_valid()
    assert form.cleaned_data["state"] == "ND"


def test_a_search_the_database_cannot_take_is_refused_with_a_message() -> None:
    form = DirectorySearchForm(data={"q": "South\x00ern", "state": "Minnesota"})
    assert not form.is_valid()
    assert "Null characters are not allowed" in str(form.errors["q"])
    assert "two-letter state code" in str(form.errors["state"])
