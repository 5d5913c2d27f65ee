"""Streamlit page scripts, run by st.navigation from ui/web/app.py (a package only so wheels ship them)."""
