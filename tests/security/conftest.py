"""The security suite attacks the real app: the owner's client from tests/api, and a stranger's."""

from __future__ import annotations

from tests.api.conftest import client, make_client  # noqa: F401  (fixtures)
