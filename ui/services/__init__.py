"""The services the three front ends share (settings, the per-process context, training, doctor, backup and
restore, exports, jobs, ...): plain Python, no typer, Streamlit or FastAPI. Front ends import these, never each
other; tests/test_architecture.py enforces it."""
