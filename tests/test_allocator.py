"""trainer/allocator.py: the arena cap is set once, and never over the user's."""

import sys

import pytest

from trainer import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_limit_arenas_sets_the_cap_on_glibc(monkeypatch):
  monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
  assert allocator.limit_arenas()


def test_limit_arenas_leaves_the_users_setting(monkeypatch):
  monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
  assert not allocator.limit_arenas()
