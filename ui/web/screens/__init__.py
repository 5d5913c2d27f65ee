"""Streamlit page scripts, run by st.navigation from ui/app.py (a package only so wheels ship them)."""
