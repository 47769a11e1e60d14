"""Who is using this browser tab: the sign-in of class mode and the identity that every page passes to core.

Three modes, chosen by the server's configuration:
- a login provider in `.streamlit/secrets.toml` (`[auth]`): Streamlit's own `st.login` (OpenID Connect);
- a class code (SMALLDATA_CLASS_CODE): the code and a display name; the browser keeps the token the roster
  gives (a cookie, and the session), so a reload or a new tab is the same person;
- neither: single-user mode, the one local user who may do everything.
Core checks every change against the identity (core.access); this module only finds out who it is.
"""

from __future__ import annotations

import json

import streamlit as st

from core.access import SINGLE_USER, Actor
from core.classroom.roster import ClassError, Roster
from ui.common import plain, settings

COOKIE = "smalldata_token"
COOKIE_DAYS = 120  # a school term and then some


def login_provider() -> bool:
    """Whether the app's secrets configure a login provider (`[auth]`): then st.login signs people in."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def class_mode() -> bool:
    return login_provider() or settings().class_mode


def roster() -> Roster:
    return Roster(settings().runs_dir)


def me() -> Actor:
    """Who this session is; the single user outside class mode. Pages call it after `sign_in` (app.py)."""
    if not class_mode():
        return SINGLE_USER
    if "_actor" not in st.session_state:  # fail closed: never the single user's rights in a class
        st.warning("Sign in first: open the app's home page.")
        st.stop()
    return st.session_state["_actor"]


def sign_in() -> Actor:
    """This session's identity, or (in class mode, not yet signed in) the sign-in form and st.stop()."""
    if not class_mode():
        return SINGLE_USER
    if (token := st.session_state.pop("_new_cookie", None)) is not None:  # once, after signing in or out
        _write_cookie(token, COOKIE_DAYS * 86400 if token else 0)
    actor = _from_provider() if login_provider() else _from_token()
    if actor is None:
        # The form as the only page: without a navigation of its own, Streamlit would list every file of pages/.
        st.navigation([st.Page(_form, title="Sign in", icon=":material/login:")], position="hidden").run()
        st.stop()
    st.session_state["_actor"] = actor
    return actor


def _from_provider() -> Actor | None:
    if not st.user.is_logged_in:
        return None
    email = str(st.user.get("email") or st.user.get("sub") or "")
    try:
        return roster().account(email, str(st.user.get("name") or ""), settings())
    except ClassError as err:
        st.error(str(err))
        st.stop()


def _from_token() -> Actor | None:
    # The cookie is the one the browser sent when this session began: after Sign out, no longer this session's.
    cookie = None if st.session_state.get("_signed_out") else st.context.cookies.get(COOKIE)
    token = st.session_state.get(COOKIE) or cookie
    actor = roster().resolve(token)
    if actor is not None:
        st.session_state[COOKIE] = token
    return actor


def _form() -> None:
    st.title("Small Data Lab")
    if login_provider():
        st.markdown("This lab is set up for a class. Sign in with your school account to start.")
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, key="oidc_login")
        return
    st.markdown(
        "This lab is set up for a class. Enter the **class code** your teacher gave you and the **name** your "
        "classmates will see next to your runs."
    )
    with st.form("sign_in"):
        code = st.text_input("Class code", type="password", key="class_code")
        name = st.text_input("Your name", max_chars=40, key="display_name")
        if st.form_submit_button("Join the class", type="primary", icon=":material/login:"):
            try:
                actor, token = roster().join(code, name, settings())
            except ClassError as err:
                st.error(plain(str(err)))
                return
            st.session_state[COOKIE] = token
            st.session_state["_new_cookie"] = token
            st.session_state["_actor"] = actor
            st.session_state.pop("_signed_out", None)
            st.rerun()
    with st.expander("Signed in before, on another computer?"):
        st.caption("Paste the personal key shown in the sidebar of that computer (under your name).")
        key = st.text_input("Personal key", type="password", key="personal_key")
        if st.button("Sign in with my key", key="key_sign_in"):
            if roster().resolve(key.strip()) is None:
                st.error("That key is not one of this class: check it, or ask your teacher.")
                return
            st.session_state[COOKIE] = key.strip()
            st.session_state["_new_cookie"] = key.strip()
            st.session_state.pop("_signed_out", None)
            st.rerun()


def _write_cookie(token: str, max_age: int) -> None:
    """The browser keeps the token for the next reload or tab (st.context.cookies reads it then)."""
    value = json.dumps(token)  # a JavaScript string literal: the token is URL-safe base64 in any case
    st.html(
        f"<script>document.cookie = '{COOKIE}=' + {value} + '; path=/; max-age={max_age}; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def show_identity() -> None:
    """The sidebar's line: who you are, your key, and Sign out."""
    if not class_mode():
        return
    actor = me()
    st.sidebar.markdown(f"Signed in as **{actor.name}**" + (" · teacher" if actor.teacher else ""))
    if login_provider():
        st.sidebar.button("Sign out", on_click=st.logout, key="sign_out")
        return
    with st.sidebar.expander("Your personal key"):
        st.caption("To sign in as yourself from another computer. Keep it to yourself: it is you, here.")
        st.code(st.session_state.get(COOKIE, ""), language=None)
    if st.sidebar.button("Sign out of this browser", key="sign_out"):
        for key in (COOKIE, "_actor"):
            st.session_state.pop(key, None)
        st.session_state["_new_cookie"] = ""  # the next run tells the browser to forget it
        st.session_state["_signed_out"] = True
        st.rerun()
