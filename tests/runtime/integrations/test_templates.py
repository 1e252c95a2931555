"""runtime.integrations.templates: Particle's Mustache over JSON data, compile errors, the budget."""

from __future__ import annotations

import json

import pytest
from pystache import parser as pystache_parser

from runtime.integrations import templates
from runtime.integrations.templates import (
    Budget,
    Namespace,
    compile_template,
    escape_html,
    problems,
    render,
    render_json,
    template_names,
    to_text,
)
from store.errors import TooLarge

# The example data of Particle's webhook reference ("Variable substitution").
PARTICLE_DATA = {
    "a": {"aa": "testing", "ab": 1234},
    "b": "xxx",
    "c": [{"ca": "first", "cb": 123}, {"ca": "second", "cb": 456}],
}


def out(template: str, data=None, variables=None, secrets=None, limit: int = 100_000) -> str:
    ns = Namespace(data=PARTICLE_DATA if data is None else data, variables=variables or {}, secrets=secrets or {})
    return render(template, ns, Budget(limit))


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{{{a.aa}}}", "testing"),
        ("{{{a.ab}}}", "1234"),
        ("{{{b}}}", "xxx"),
        ("{{{c.0.ca}}}", "first"),
        ("{{{c.1.cb}}}", "456"),
        ("{{#b}}{{{b}}}{{/b}}{{^b}}Missing{{/b}}", "xxx"),
        ("{{#z}}{{{z}}}{{/z}}{{^z}}Missing{{/z}}", "Missing"),
        ("{{#c}}{{{ca}}}~{{/c}}", "first~second~"),
    ],
)
def test_particles_reference_examples(template, expected):
    assert out(template) == expected


def test_double_braces_html_escape_triple_braces_and_ampersand_do_not():
    data = {"x": "<a href='/'>&\"</a>"}
    assert out("{{x}}", data) == "&lt;a href=&#39;/&#39;&gt;&amp;&quot;&lt;/a&gt;"
    assert out("{{{x}}}|{{& x}}|{{{ x }}}", data) == "|".join([data["x"]] * 3)
    assert escape_html("&<>\"'/=`") == "&amp;&lt;&gt;&quot;&#39;/=`"  # the five of Particle's reference


def test_values_are_written_as_mustache_js_writes_them():
    assert [to_text(v) for v in (None, True, False, 0, 21, 21.5, 21.0, -0.25, 1e21, "é")] == [
        "",
        "true",
        "false",
        "0",
        "21",
        "21.5",
        "21",
        "-0.25",
        "1e+21",
        "é",
    ]
    assert to_text([1, [2, None], "x"]) == "1,2,,x"  # Array.join: a list in a body is "1,2,,x"
    assert to_text({"k": [1, "é"]}) == '{"k":[1,"é"]}'  # compact JSON, not "[object Object]"


def test_sections_loop_lists_enter_objects_and_skip_falsy_values():
    data = {
        "list": [{"n": 1}, {"n": 2}],
        "obj": {"n": "o", "deep": {"n": "d"}},
        "empty_obj": {},
        "n": "top",
        **{f"f{i}": v for i, v in enumerate([None, False, 0, 0.0, "", []])},
    }
    assert out("{{#list}}[{{n}}]{{/list}}", data) == "[1][2]"
    assert out("{{#obj}}{{n}}{{#deep}}/{{n}}{{/deep}}{{/obj}}", data) == "o/d"
    assert out("{{#list}}{{n}}<{{obj.n}}>{{/list}}", data) == "1<o>2<o>"  # the stack is searched outwards
    assert out("{{#empty_obj}}shown{{/empty_obj}}", data) == "shown"  # truthy, as in mustache.js
    for i in range(6):
        assert out(f"{{{{#f{i}}}}}x{{{{/f{i}}}}}{{{{^f{i}}}}}none{{{{/f{i}}}}}", data) == "none", i
    assert out("{{#list}}{{.}};{{/list}}|{{#obj.n}}{{.}}{{/obj.n}}", data) == "{&quot;n&quot;:1};{&quot;n&quot;:2};|o"
    assert out("{{#missing}}x{{/missing}}{{^missing}}y{{/missing}}", data) == "y"


def test_paths_reach_keys_and_list_indexes_only():
    data = {"s": "text", "l": [10, 20], "o": {"k": 1}}
    assert out("{{l.1}}|{{l.2}}|{{l.-1}}|{{l.01}}|{{s.0}}|{{s.upper}}|{{o.k.x}}|{{o.__class__}}", data) == "20|||||||"
    assert out("{{l.length}}{{o.keys}}{{o.items}}", data) == ""
    assert out("{{0.k}}|{{1}}", [{"k": "first"}, "second"]) == "first|second"  # a JSON array as the root


def test_standalone_section_lines_leave_no_blank_lines():
    template = "items:\n  {{#c}}\n  - {{ca}}\n  {{/c}}\ndone"
    assert out(template) == "items:\n  - first\n  - second\ndone"


def test_predefined_variables_and_secrets_win_over_data_everywhere():
    data = {"NAME": "from-data", "KEY": "from-data", "x": {"KEY": "nested", "NAME": "nested"}}
    variables, secrets = {"NAME": "predefined"}, {"KEY": "the-secret"}
    assert out("{{NAME}} {{KEY}}", data, variables, secrets) == "predefined the-secret"
    assert out("{{#x}}{{NAME}} {{KEY}}{{/x}}", data, variables, secrets) == "predefined the-secret"
    assert out("{{OTHER}}|{{x.NAME}}", {"OTHER": "o", "x": {"NAME": "n"}}) == "|n"  # all-caps: reserved
    # A response template may read all-caps fields of the response (it has no secrets).
    ns = Namespace(data={"STATUS": "ok"}, variables=variables, reserved_from_data=True)
    assert render("{{STATUS}} {{NAME}}", ns, Budget(100)) == "ok predefined"


def test_render_json_renders_strings_and_keys_and_keeps_other_values():
    ns = Namespace(data={"k": "key", "v": "<v>"})
    value = {"{{k}}": ["{{{v}}}", 1, True, None, {"n": "{{v}}"}]}
    assert render_json(value, ns, Budget(1000)) == {"key": ["<v>", 1, True, None, {"n": "&lt;v&gt;"}]}


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{#a}}x", "invalid template: {{#a}} is not closed"),
        ("{{#a}}{{#b}}{{/b}}", "invalid template: {{#a}} is not closed"),
        ("{{^a}}x", "invalid template: {{^a}} is not closed"),
        ("{{#a}}{{/b}}", "Found {{/b}}, expected {{/a}}"),
        ("x{{/a}}", "Found {{/a}}, expected {{#a}}"),
        ("ab {{x", "the tag at character 4 is not closed with }}"),
        ("{{{x}}", "the tag at character 1 is not closed with }}}"),
        ("{{> partial}}", "partials ({{> partial}}) are not supported"),
        ("{{=<% %>=}}<%x%>", "set-delimiter tags ({{=<% %>=}}) are not supported"),
        ("{{ = | | = }}", "set-delimiter tags"),
        ("{{a b}}", "'{{a b}}' is not a valid name"),
        ("{{a..b}}", "'{{a..b}}' is not a valid name"),
        ("{{ }}", "is not a valid name"),
        ("{{#a}}" * 17 + "{{/a}}" * 17, "sections are nested more than 16 deep"),
    ],
)
def test_compile_errors_say_what_is_wrong(template, message):
    with pytest.raises(ValueError) as info:
        compile_template(template)
    assert message in str(info.value)


def test_comments_render_nothing_and_names_are_collected():
    t = compile_template("a{{! a note }}{{x.y}}{{#s}}{{{r}}}{{^i}}{{.}}{{/i}}{{/s}}")
    assert [(tag.kind, tag.name, tag.depth) for tag in t.tags] == [
        ("variable", "x.y", 0),
        ("section", "s", 0),
        ("raw", "r", 1),
        ("inverted", "i", 1),
        ("variable", ".", 2),
    ]
    assert template_names("{{x.y}}{{#s}}{{r}}{{/s}}{{.}}") == ["x", "s", "r"]
    assert out("a{{! not output }}b") == "ab"


def test_problems_apply_the_secret_policy():
    t = compile_template("{{#K}}{{/K}}{{K.0}}{{x.K}}{{{K}}}{{NOPE}}{{P.x}}{{.}}{{P}}{{#x}}{{.}}{{/x}}")
    found = problems(t, secrets={"K"}, predefined={"P"})
    assert found == [
        "{{#K}}: K is a secret: a plain variable only, never a section",
        "{{K.0}}: K is a secret: it has no fields or items",
        "{{x.K}}: K is a declared secret, so it cannot name a field of the data",
        '{{{NOPE}}} is neither a declared secret nor an event variable: add NOPE to "secrets" '
        "(names in secret-name syntax are reserved)",
        "{{P.x}}: P is text: it has no fields or items",
        "{{.}}: '.' means the current item, so it is only used inside a section",
    ]
    published = problems(compile_template("{{{K}}}{{STATUS}}"), secrets={"K"}, predefined=set(), secrets_allowed=False)
    assert published[0] == "{{{K}}}: secrets cannot be used here (what this field renders is published)"
    assert "STATUS" in published[1]
    assert problems(compile_template("{{STATUS}}"), secrets=set(), predefined=set(), reserved_from_data=True) == []


def test_the_budget_bounds_what_nested_sections_multiply():
    data = {"a": list(range(100))}
    nested = "{{#a}}{{#a}}{{#a}}xxxxxxxxxx{{/a}}{{/a}}{{/a}}"  # 10 million characters
    with pytest.raises(TooLarge, match="the templates rendered more than 100000 characters"):
        out(nested, data)
    with pytest.raises(TooLarge):
        out("{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}", data)  # a million steps writing nothing
    budget = Budget(50)
    ns = Namespace(data={"v": "x" * 20})
    render("{{v}}", ns, budget)
    render("{{v}}", ns, budget)
    with pytest.raises(TooLarge):
        render("{{v}}", ns, budget)  # the budget is shared by every render of a request
    assert out("{{#a}}.{{/a}}", data) == "." * 100


def test_our_parser_builds_the_same_tree_as_pystaches():
    """The anchored tag regex (linear on runs of spaces) must not change what is parsed."""
    corpus = [
        "plain",
        "  {{a}}  ",
        "a {{b}} \t {{{c}}}\n",
        "x\n  {{#s}}\n  y {{v}}\n  {{/s}}\nz",
        " \t{{^s}}\n\t{{/s}}\n",
        "{{! c }}\n  {{! c2 }}  \nend",
        "{{#a}}  {{#b}}\n{{/b}}{{/a}}",
        "\r\n  {{#a}}\r\n{{/a}}\r\n",
        '{ "k": "{{{v}}}",   "n": {{n}} }',
    ]

    def shape(nodes):
        result = []
        for n in nodes:
            if isinstance(n, str):
                result.append(n)
                continue
            inner = getattr(n, "parsed", None) or getattr(n, "parsed_section", None)
            result.append((type(n).__name__, getattr(n, "key", None), inner and shape(inner._parse_tree)))
        return result

    for source in corpus:
        theirs = pystache_parser.parse(source, raise_on_mismatch=True)._parse_tree
        assert shape(list(compile_template(source).nodes)) == shape(theirs), source
    pattern = templates._Parser(None)
    pattern._compile_delimiters()
    assert "(?<![\\ \\t])" in pattern._template_re.pattern


def test_a_value_is_never_parsed_as_a_template():
    data = {"x": "{{{K}}} {{#K}}{{/K}} {{> p}} {{=<% %>=}}", "y": "{{y}}"}
    assert out("{{{x}}}|{{{y}}}", data, secrets={"K": "s3cret"}) == data["x"] + "|{{y}}"
    assert json.dumps(render_json({"a": "{{{x}}}"}, Namespace(data=data), Budget(1000))).count("s3cret") == 0
