"""Small Data Lab: the Streamlit entry point. The shared frame (page config, sidebar, navigation);
each page in pages/ holds only its own content."""

import streamlit as st

from core.plugins import load_plugins
from ui.common import show_sidebar
from ui.identity import class_mode, sign_in

load_plugins()  # models and methods registered by $SMALLDATA_PLUGINS, as the workers see them

st.set_page_config(page_title="Small Data Lab", page_icon=":material/science:", layout="wide")
you = sign_in()  # in class mode: the sign-in form until this browser tab knows who it is

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data and augmentations", icon=":material/photo_library:"),
    st.Page("pages/images.py", title="Your images", icon=":material/add_photo_alternate:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/bar_chart:"),
    st.Page("pages/why.py", title="Why it works", icon=":material/hub:"),
    st.Page("pages/notebook.py", title="The notebook, replayed", icon=":material/menu_book:"),
    st.Page("pages/try_model.py", title="Try a model", icon=":material/image_search:"),
    st.Page("pages/board.py", title="Class board", icon=":material/leaderboard:"),
]
if class_mode() and you.teacher:
    PAGES.append(st.Page("pages/teacher.py", title="Teacher", icon=":material/school:"))

page = st.navigation(PAGES)
st.session_state["_framed"] = True
if goto := st.session_state.pop("_goto", None):  # a deep link that arrived before the frame (ui.common.framed)
    st.switch_page(goto)
show_sidebar()
page.run()
