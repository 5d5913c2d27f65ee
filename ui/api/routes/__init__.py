"""The /v1 routers, one small module per area."""
