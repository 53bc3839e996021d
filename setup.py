"""The package mapping: the import name is `filterscope` (a person's own `app` package stays theirs), its code
lives in the checkout's `app/`, and the page's files (`static/`, `templates/`) and the data sets travel inside
it, so `pip install .` (a wheel, not editable) serves the page. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

code = ["filterscope" + name[len("app"):] for name in find_packages(include=["app", "app.*"])]
setup(
    packages=[*code, "filterscope.static", "filterscope.templates"],
    package_dir={"filterscope": "app", "filterscope.static": "static", "filterscope.templates": "templates"},
    package_data={
        "filterscope.static": ["**/*"],
        "filterscope.templates": ["*.html"],
        "filterscope.training.datasets": ["data/*.npz", "data/*.md"],
        "filterscope.record": ["data/*.sqlite"],
    },
)
