"""The front page, the operator sign-in and the branded error pages, through real requests.

pytest-django runs with DEBUG off, as production does, so Django's own error handlers
render the templates/4xx.html and 500.html pages here.
"""

import pytest
from django.test import Client
from django.urls import reverse

from hub.models import PayerStatus
from tests.conftest import Tenant
from tests.factories import PayerFactory

USWDS_CSS = "/static/uswds/css/uswds.min.css"


def _branded(html: str) -> bool:
    return USWDS_CSS in html and "Payer-to-payer hub" in html and 'id="main-content"' in html


def test_front_page_explains_the_hub_and_lists_participating_plans(
    client: Client, north: Tenant, south: Tenant
) -> None:
    PayerFactory(name="Invited Health", slug="invited", status=PayerStatus.INVITED)

    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    assert _branded(html)
    assert html.count('class="usa-process-list__item"') == 4
    assert 'href="/p/north/sign-in/"' in html and 'href="/p/south/sign-in/"' in html
    assert "Invited Health" not in html


@pytest.mark.django_db
def test_operator_console_signs_in_on_the_hub_page(client: Client) -> None:
    response = client.get("/operator/login/?next=/operator/")

    html = response.content.decode()
    assert _branded(html)
    assert "Operator console sign-in" in html
    assert 'autocomplete="current-password"' in html and 'value="/operator/"' in html


@pytest.mark.django_db
def test_a_wrong_password_is_said_in_an_alert(client: Client) -> None:
    response = client.post(
        "/operator/login/?next=/operator/", {"username": "operator", "password": "wrong"}
    )

    html = response.content.decode()
    assert 'class="usa-alert usa-alert--error usa-alert--slim" role="alert"' in html
    assert "correct username and password" in html


@pytest.mark.django_db
def test_unknown_page_is_a_branded_404(client: Client) -> None:
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert _branded(response.content.decode())
    assert "Page not found" in response.content.decode()


def test_another_plans_page_is_the_same_branded_404(
    client: Client, north: Tenant, south: Tenant
) -> None:
    client.force_login(north.member)

    response = client.get(reverse("members:home", kwargs={"payer_slug": "south"}))

    html = response.content.decode()
    assert response.status_code == 404
    assert _branded(html) and "Page not found" in html
    # Fail closed: nothing tells that the page exists for another plan.
    assert south.payer.name not in html


@pytest.mark.django_db
@pytest.mark.urls("tests.hub.error_urls")
def test_forbidden_is_a_branded_403(client: Client) -> None:
    response = client.get("/test-forbidden/")

    assert response.status_code == 403
    assert _branded(response.content.decode())
    assert "open this page" in response.content.decode()


@pytest.mark.django_db
def test_a_form_without_its_csrf_token_is_a_branded_403() -> None:
    client = Client(enforce_csrf_checks=True)

    response = client.post("/operator/login/", {"username": "x", "password": "y"})

    assert response.status_code == 403
    assert _branded(response.content.decode())
    assert "Please try again" in response.content.decode()


@pytest.mark.django_db
def test_a_bad_host_is_a_branded_400(client: Client) -> None:
    response = client.get("/", HTTP_HOST="hub.attacker.example")

    assert response.status_code == 400
    assert _branded(response.content.decode())


@pytest.mark.django_db
@pytest.mark.urls("tests.hub.error_urls")
def test_a_bug_is_a_branded_500_that_needs_no_context() -> None:
    client = Client(raise_request_exception=False)

    response = client.get("/test-broken/")

    html = response.content.decode()
    assert response.status_code == 500
    assert _branded(html)
    assert "Something went wrong on our side" in html
