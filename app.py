"""Small Data Lab: the Streamlit entry point (filled in by the app issue)."""

import streamlit as st

st.title("Small Data Lab")
