"""The alert environment's shortcuts give exactly what stock Jinja gives: attribute
lookups on dicts (keys, missing keys, dict method names), calls of every kind of
callable, and globals."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from notifier.delivery.render.environment import AlertEnvironment


def both(source: str, **values: Any) -> tuple[str, str]:
    """``source`` rendered by stock Jinja and by the alert environment."""
    out = []
    for env in (
        jinja2.Environment(undefined=jinja2.StrictUndefined),
        AlertEnvironment(undefined=jinja2.StrictUndefined),
    ):
        env.globals["shout"] = lambda text: text.upper()
        out.append(env.from_string(source).render(**values))
    return out[0], out[1]


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{{ d.title }}", {"d": {"title": "T"}}),
        ("{{ d.entry.link }}", {"d": {"entry": {"link": "https://x"}}}),
        # A key named like a dict method: Jinja finds the method first, so must we.
        ("{{ d.items()|list }} {{ d.get('get') }}", {"d": {"items": 1, "get": 2}}),
        ("{{ d.keys()|list|length }}", {"d": {"keys": "k", "a": 1}}),
        ("{{ d.title is defined }} {{ d.missing is defined }}", {"d": {"title": None}}),
        ("{{ d.title }}", {"d": {"title": None}}),
        ("{{ o.real }} {{ o.imag }}", {"o": 3}),  # attributes of other objects
        ("{{ m.title }}", {"m": type("M", (dict,), {"title": "attr"})(title="key")}),
    ],
)
def test_attribute_lookups_match_stock_jinja(source: str, values: dict[str, Any]) -> None:
    stock, ours = both(source, **values)
    assert ours == stock


def test_a_missing_key_is_still_an_error_under_strict_undefined() -> None:
    env = AlertEnvironment(undefined=jinja2.StrictUndefined)
    with pytest.raises(jinja2.UndefinedError, match="has no attribute 'titel'"):
        env.from_string("{{ d.titel }}").render(d={"title": "T"})


@jinja2.pass_context
def context_name(context: jinja2.runtime.Context, suffix: str) -> str:
    return f"{context['name']}{suffix}"


@jinja2.pass_environment
def environment_kind(environment: jinja2.Environment) -> str:
    return "env" if isinstance(environment, jinja2.Environment) else "?"


class PassingContext:
    @jinja2.pass_context
    def __call__(self, context: jinja2.runtime.Context) -> str:
        return str(context["name"])


def stops() -> str:
    raise StopIteration


@pytest.mark.parametrize(
    "source",
    [
        "{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, b=2) }}",
        "{% macro row(label) %}<{{ label }}:{{ caller() }}>{% endmacro %}"
        "{% call row('x') %}{{ name }}{% endcall %}",
        "{{ context_name('!') }} {{ environment_kind() }} {{ passing() }}",
        "{{ shout(name) }} {{ d.get('a', 'none') }} {{ '{}-{}'.format(1, 2) }}",
        "{% for x in [1, 2] %}{{ context_name(x) }}{% endfor %}",
        "{{ stops() is defined }}",
    ],
)
def test_calls_match_stock_jinja(source: str) -> None:
    values = {
        "name": "N",
        "d": {"a": "A"},
        "context_name": context_name,
        "environment_kind": environment_kind,
        "passing": PassingContext(),
        "stops": stops,
    }
    stock, ours = both(source, **values)
    assert ours == stock


def test_a_macro_called_from_html_is_escaped_like_stock_jinja() -> None:
    source = "{% macro m(t) %}<b>{{ t }}</b>{% endmacro %}{{ m('<i>') }}"
    for env in (jinja2.Environment(autoescape=True), AlertEnvironment(autoescape=True)):
        assert env.from_string(source).render() == "<b>&lt;i&gt;</b>"


def test_globals_are_a_plain_dict_seen_by_every_template() -> None:
    env = AlertEnvironment(loader=jinja2.DictLoader({"a.txt": "{{ product }}", "b.txt": "x"}))
    env.globals["product"] = "tariff-notifier"
    template = env.get_template("a.txt")
    assert type(template.globals) is dict
    assert template.render() == "tariff-notifier"
