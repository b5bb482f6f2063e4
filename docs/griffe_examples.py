"""Griffe extension: reads a Google-style ``Example:`` section as ``Examples:``.

The package's docstrings head their doctests ``Example:`` (as optax's and the Google style guide's
do); griffe only parses ``Examples:`` as code, and would render the ``>>>`` lines as prose.
"""

import re

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):

  def on_instance(self, *, obj, **kwargs):
    del kwargs
    if obj.docstring is not None:
      obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
