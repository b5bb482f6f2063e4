"""Griffe extension: what griffe cannot see by reading the source.

* A Google-style ``Example:`` section is read as ``Examples:``: the package's docstrings head their
  doctests ``Example:`` (as optax's and the Google style guide's do), and griffe only parses
  ``Examples:`` as code; it would render the ``>>>`` lines as prose.
* A function decorated with ``presets.accepts_preset`` gets the keyword-only ``preset=None`` the
  decorator adds at run time, so its signature and its ``Args:`` (which documents ``preset``) agree.
"""

import re

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


def _add_preset(func):
  if "preset" in func.parameters:
    return
  params = list(func.parameters)
  at = next((i for i, p in enumerate(params)
             if p.kind is griffe.ParameterKind.var_keyword), len(params))
  params.insert(at, griffe.Parameter(
      "preset", kind=griffe.ParameterKind.keyword_only, default="None"))
  func.parameters = griffe.Parameters(*params)


class ExampleSections(griffe.Extension):

  def on_instance(self, *, obj, **kwargs):
    del kwargs
    if obj.docstring is not None:
      obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
    if isinstance(obj, griffe.Function) and any(
        str(d.value).endswith("accepts_preset") for d in obj.decorators):
      _add_preset(obj)
