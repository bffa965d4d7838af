"""``say``: the wording macros of ``email/_macros.txt``, callable from any template.

Templates call them as ``say.headline(alert)``; an operator's ``_macros.txt`` (in the
override folder) replaces the shipped one like any other template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2


class Wording:
    """The macros of one template as ``say.<name>(...)``, returning plain ``str``.

    Why not ``{% import %}``: Jinja marks a macro's result safe when the *caller*
    autoescapes, even though a macro from a ``.txt`` template never escaped what it
    interpolated. Imported into an HTML template, a headline naming a feed entry title
    would inject markup. Called through here (no eval context), the result is a plain
    string, so an HTML template escapes it like any other value.
    """

    def __init__(self, env: jinja2.Environment, name: str) -> None:
        self._env = env
        self._name = name

    def __getattr__(self, macro_name: str) -> Any:
        if macro_name.startswith("_"):
            raise AttributeError(macro_name)
        macro = getattr(self._env.get_template(self._name).module, macro_name)

        def plain(*args: Any, **kwargs: Any) -> str:
            return str(macro(*args, **kwargs))

        # Templates never reload (auto_reload is off): a macro found once stays, and the
        # next lookup is a plain attribute, not another __getattr__.
        setattr(self, macro_name, plain)
        return plain


class OneEmailWording:
    """``say`` while the parts of one email render: each macro's result is kept for the
    same arguments, so the subject, the headline and the footer's reason are worded once
    per email instead of in every part that shows them (the subject twice, the headline
    three times).

    Arguments are matched by identity (the same alert view, the same subscriber id
    string) and held until the email is done, so an id cannot be reused by another
    object meanwhile. A macro is a function of its arguments: it sees no render context.
    """

    def __init__(self, wording: Wording) -> None:
        self._wording = wording
        self._results: dict[tuple[Any, ...], tuple[tuple[Any, ...], str]] = {}

    def __getattr__(self, macro_name: str) -> Any:
        plain: Callable[..., str] = getattr(self._wording, macro_name)
        results = self._results

        def kept(*args: Any, **kwargs: Any) -> str:
            if kwargs:
                return plain(*args, **kwargs)  # rare: not kept
            key = (macro_name, *map(id, args))
            found = results.get(key)
            if found is None:
                found = results[key] = (args, plain(*args))
            return found[1]

        setattr(self, macro_name, kept)
        return kept
