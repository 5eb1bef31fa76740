"""Paths the tests share. Test modules import them from here, never from
``conftest`` (pytest may import several modules of that name)."""
import os.path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
