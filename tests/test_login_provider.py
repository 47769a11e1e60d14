"""Class mode with a login provider: Streamlit's own st.login against a real OpenID Connect provider made for
tests (oidc-provider-mock, on a local port), in Chromium. A student and a teacher sign in through the
provider's form; the teacher is the account SMALLDATA_TEACHERS names."""

from __future__ import annotations

import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.sync_api import expect, sync_playwright

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, serve

ACCOUNTS = [User(sub="ana@school.org", claims={"email": "ana@school.org", "name": "Ana"}),
            User(sub="lee@school.org", claims={"email": "lee@school.org", "name": "Ms Lee"})]  # fmt: skip


@pytest.fixture
def provider_app(dataset_dir, checkpoint, tmp_path):
    with run_server_in_thread(user_claims=ACCOUNTS) as provider:
        port = free_port()
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            'cookie_secret = "a test secret that is long enough to sign cookies"\n'
            'client_id = "small-data-lab"\n'
            'client_secret = "any"\n'
            f'server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"\n'
        )
        env = {"SMALLDATA_TEACHERS": "lee@school.org"}
        yield from serve(dataset_dir, checkpoint, tmp_path, env, port=port, args=("--secrets.files", str(secrets)))


def sign_in(browser, url: str, account: str):
    page = browser.new_context().new_page()
    page.goto(url)
    expect(page.get_by_text("Sign in with your school account")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=account).click()  # the provider's form: a predefined account
    return page


@pytest.mark.slow
def test_a_student_and_a_teacher_sign_in_through_the_provider(provider_app):
    url, runs_dir = provider_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ana = sign_in(browser, url, "ana@school.org")
        expect(ana.get_by_text("Signed in as Ana")).to_be_visible(timeout=60_000)
        assert ana.get_by_role("link", name="Teacher").count() == 0
        lee = sign_in(browser, url, "lee@school.org")
        expect(lee.get_by_text("Signed in as Ms Lee · teacher")).to_be_visible(timeout=60_000)
        expect(lee.get_by_role("link", name="Teacher")).to_be_visible(timeout=30_000)
        ana.reload()  # the provider's identity is Streamlit's cookie: a reload is still Ana
        expect(ana.get_by_text("Signed in as Ana")).to_be_visible(timeout=60_000)
        browser.close()
    from core.classroom.roster import Roster

    assert {m["name"]: m["role"] for m in Roster(runs_dir).members()} == {"Ana": "student", "Ms Lee": "teacher"}
