"""The application layer: settings, the per-process context, the training and doctor services, and the entry
points that use them (the CLI here, the Streamlit app in web/)."""
