"""Where the project's non-Python files live: inside the installed package (a wheel carries the page's files
as filterscope/static and filterscope/templates), or beside app/ in a checkout (an editable install)."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
STATIC = PACKAGE / "static" if (PACKAGE / "static").is_dir() else ROOT / "static"
TEMPLATES = PACKAGE / "templates" if (PACKAGE / "templates").is_dir() else ROOT / "templates"
# The run a fresh data directory starts with (scripts/pretrain.py makes it; record/bundle.py adds it).
PRETRAINED = PACKAGE / "record" / "data" / "pretrained.sqlite"
