"""gateway.config.loader: YAML text -> plain data, source positions, ${ENV} interpolation."""

from __future__ import annotations

import hashlib

import pytest

from gateway.config.loader import load_bytes, load_file, parse
from gateway.errors import ConfigErrors


def load(text: str, env: dict[str, str] | None = None):
    return parse(text, "g.yaml", env or {})


def errors_of(text: str, env: dict[str, str] | None = None):
    with pytest.raises(ConfigErrors) as info:
        load(text, env)
    return info.value.errors


# -- positions ------------------------------------------------------------------------------


NESTED = """\
version: 1
server:
  host: 127.0.0.1
  port: 8080
routes:
  smart:
    fallback:
      targets:
        - target: {provider: openai, model: gpt-4o}
"""


def test_plain_data_is_plain_dicts_and_lists():
    """The loader returns plain Python dicts, lists and scalars."""
    data, _ = load(NESTED)
    assert data == {
        "version": 1,
        "server": {"host": "127.0.0.1", "port": 8080},
        "routes": {
            "smart": {"fallback": {"targets": [{"target": {"provider": "openai", "model": "gpt-4o"}}]}}
        },
    }
    assert type(data) is dict and type(data["routes"]["smart"]["fallback"]["targets"]) is list


def test_key_positions_are_one_based_line_and_column():
    """Each mapping key is recorded at its 1-based line and column."""
    _, source = load(NESTED)
    assert source.keys[("version",)] == (1, 1)
    assert source.keys[("server", "host")] == (3, 3)
    assert source.keys[("server", "port")] == (4, 3)
    assert source.keys[("routes", "smart", "fallback", "targets")] == (8, 7)


def test_value_positions_are_one_based_line_and_column():
    """Each scalar value is recorded where the value starts, not where its key starts."""
    _, source = load(NESTED)
    assert source.values[("version",)] == (1, 10)
    assert source.values[("server", "host")] == (3, 9)
    assert source.values[("server", "port")] == (4, 9)


def test_positions_inside_flow_mappings_and_sequences():
    """Flow-style mappings and list items get their own column."""
    _, source = load(NESTED)
    target = ("routes", "smart", "fallback", "targets", 0, "target")
    assert source.values[("routes", "smart", "fallback", "targets", 0)] == (9, 11)
    assert source.values[target] == (9, 19)
    assert source.keys[target + ("provider",)] == (9, 20)
    assert source.values[target + ("provider",)] == (9, 30)
    assert source.values[target + ("model",)] == (9, 45)


def test_position_of_unknown_path_falls_back_to_nearest_ancestor():
    """SourceMap.position walks up to the closest path it knows."""
    _, source = load(NESTED)
    assert source.position(("server", "port", "nope", 3)) == (4, 9)
    assert source.position(("nothing",)) == (1, 1)


def test_key_position_falls_back_to_value_position():
    """SourceMap.key_position of a list item (no key) is the item's value position."""
    _, source = load(NESTED)
    assert source.key_position(("routes", "smart", "fallback", "targets", 0)) == (9, 11)


def test_source_error_uses_value_or_key_position():
    """SourceMap.error points at the value by default, at the key with at_key=True."""
    _, source = load(NESTED)
    at_value = source.error(("server", "port"), "bad port")
    at_key = source.error(("server", "port"), "bad port", at_key=True)
    assert (at_value.line, at_value.column, at_value.path) == (4, 9, "$.server.port")
    assert (at_key.line, at_key.column) == (4, 3)
    assert str(at_value) == "g.yaml:4:9: $.server.port: bad port"


def test_block_sequence_item_positions():
    """Items of a block sequence are recorded at the item, one per line."""
    _, source = load("xs:\n  - 1\n  - two\n  - {a: b}\n")
    assert source.values[("xs", 0)] == (2, 5)
    assert source.values[("xs", 1)] == (3, 5)
    assert source.values[("xs", 2)] == (4, 5)
    assert source.keys[("xs", 2, "a")] == (4, 6)


# -- duplicate keys -------------------------------------------------------------------------


def test_duplicate_key_is_an_error_with_first_definition():
    """A repeated key is an error at the repeat, naming the line of the first definition."""
    errors = errors_of("a: 1\nb: 2\na: 3\n")
    assert len(errors) == 1
    err = errors[0]
    assert (err.line, err.column, err.path) == (3, 1, "$.a")
    assert "duplicate key 'a'" in err.message
    assert "first defined at line 1" in err.message


def test_every_duplicate_key_is_reported():
    """All duplicates of a file are reported at once, each with its own position."""
    text = "a: 1\nb:\n  x: 1\n  x: 2\na: 2\na: 3\n"
    errors = errors_of(text)
    assert [(e.line, e.column, e.path) for e in errors] == [
        (4, 3, "$.b.x"),
        (5, 1, "$.a"),
        (6, 1, "$.a"),
    ]
    assert "first defined at line 3" in errors[0].message
    assert all("first defined at line 1" in e.message for e in errors[1:])


def test_duplicate_keys_in_flow_mapping():
    """Duplicates in a flow mapping are caught too."""
    errors = errors_of("t: {provider: a, model: m, provider: b}\n")
    assert [(e.line, e.column, e.path) for e in errors] == [(1, 28, "$.t.provider")]


# -- environment interpolation --------------------------------------------------------------


def test_env_variable_is_substituted():
    """${VAR} takes the variable's value."""
    data, _ = load("api_key: ${OPENAI_API_KEY}\n", {"OPENAI_API_KEY": "sk-test"})
    assert data == {"api_key": "sk-test"}


def test_env_variable_inside_text():
    """${VAR} may sit inside a longer string, several times."""
    data, _ = load("url: http://${HOST}:${PORT}/v1\n", {"HOST": "h", "PORT": "1"})
    assert data == {"url": "http://h:1/v1"}


def test_env_default_used_when_unset():
    """${VAR:-default} falls back to the default when VAR is not set."""
    data, _ = load("host: ${HOST:-127.0.0.1}\n")
    assert data == {"host": "127.0.0.1"}


def test_env_default_ignored_when_set():
    """${VAR:-default} uses VAR when it is set."""
    data, _ = load("host: ${HOST:-127.0.0.1}\n", {"HOST": "0.0.0.0"})
    assert data == {"host": "0.0.0.0"}


def test_env_empty_default():
    """${VAR:-} gives an empty string."""
    data, _ = load("token: ${TOKEN:-}\n")
    assert data == {"token": ""}


def test_double_dollar_is_a_literal_dollar():
    """$$ escapes a dollar sign; $${VAR} is the literal text ${VAR}."""
    data, _ = load("a: price $$5\nb: $${HOME}\n", {"HOME": "/root"})
    assert data == {"a": "price $5", "b": "${HOME}"}


def test_lone_dollar_is_left_alone():
    """A $ that starts no variable stays as it is."""
    data, _ = load("a: cost$ 5\n")
    assert data == {"a": "cost$ 5"}


def test_env_value_is_not_interpolated_again():
    """A variable's value containing ${...} is taken literally."""
    data, _ = load("a: ${X}\n", {"X": "${Y}", "Y": "no"})
    assert data == {"a": "${Y}"}


def test_unset_variable_without_default_is_an_error():
    """An unset ${VAR} without default is an error naming the variable, at its line."""
    errors = errors_of("version: 1\nproviders:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n")
    assert len(errors) == 1
    err = errors[0]
    assert (err.line, err.column) == (4, 14)
    assert err.path == "$.providers.openai.api_key"
    assert "OPENAI_API_KEY" in err.message
    assert "not set" in err.message
    assert err.hint is not None and "${OPENAI_API_KEY:-" in err.hint


def test_every_unset_variable_is_reported():
    """Several unset variables are all reported, each at its own line."""
    errors = errors_of("a: ${A}\nb: x\nc: ${C}\n")
    assert [(e.line, e.path) for e in errors] == [(1, "$.a"), (3, "$.c")]
    assert "${A}" in errors[0].message and "${C}" in errors[1].message


def test_unset_variable_in_list_item():
    """An unset variable in a list item points at that item."""
    errors = errors_of("xs:\n  - ok\n  - ${MISSING}\n")
    assert [(e.line, e.column, e.path) for e in errors] == [(3, 5, "$.xs[1]")]


def test_plain_scalar_variable_becomes_int():
    """A plain scalar that is exactly ${PORT:-8080} becomes the integer 8080."""
    data, _ = load("port: ${PORT:-8080}\n")
    assert data["port"] == 8080 and type(data["port"]) is int


def test_plain_scalar_variable_from_env_becomes_number():
    """A plain ${VAR} expanding to a number takes the number's type."""
    data, _ = load("a: ${A}\nb: ${B}\n", {"A": "42", "B": "0.5"})
    assert data == {"a": 42, "b": 0.5}
    assert type(data["a"]) is int and type(data["b"]) is float


def test_plain_scalar_variable_becomes_bool():
    """A plain ${VAR} expanding to true/false becomes a boolean."""
    data, _ = load("a: ${A}\n", {"A": "false"})
    assert data == {"a": False}


def test_single_quoted_variable_stays_string():
    """A quoted '${PORT:-8080}' stays the string '8080'."""
    data, _ = load("port: '${PORT:-8080}'\n")
    assert data["port"] == "8080"


def test_double_quoted_variable_stays_string():
    """A double-quoted "${VAR}" stays a string even when it looks like a number."""
    data, _ = load('port: "${PORT}"\n', {"PORT": "9000"})
    assert data["port"] == "9000"


def test_variable_inside_text_stays_string():
    """A plain scalar with text around ${VAR} stays a string."""
    data, _ = load("a: v${N}\n", {"N": "1"})
    assert data == {"a": "v1"}


def test_plain_variable_with_yaml_1_1_boolean_word_stays_string():
    """${VAR} expanding to 'yes' stays the string 'yes' (YAML 1.2)."""
    data, _ = load("a: ${A}\n", {"A": "yes"})
    assert data == {"a": "yes"}


# -- YAML 1.2 -------------------------------------------------------------------------------


def test_yaml_1_2_on_yes_off_no_stay_strings():
    """`on: yes` is the string key 'on' with the string value 'yes' (no YAML 1.1 booleans)."""
    data, _ = load("on: yes\noff: no\ny: n\n")
    assert data == {"on": "yes", "off": "no", "y": "n"}


def test_yaml_1_2_true_false_null_numbers():
    """true/false/null and numbers keep their YAML 1.2 core types."""
    data, _ = load("t: true\nf: false\nn: null\nt2: ~\ni: 12\nx: 1.5\ns: '12'\n")
    assert data == {"t": True, "f": False, "n": None, "t2": None, "i": 12, "x": 1.5, "s": "12"}


def test_integer_keys_become_strings():
    """Integer mapping keys come back as strings, so JSON paths stay textual."""
    data, source = load("pricing:\n  1: a\n  2.5: b\n")
    assert data == {"pricing": {"1": "a", "2.5": "b"}}
    assert source.keys[("pricing", "1")] == (2, 3)


# -- syntax errors --------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column():
    """An unclosed flow sequence is a YAML syntax error at the line where it breaks."""
    errors = errors_of("a: [1, 2\nb: 3\n")
    assert len(errors) == 1
    err = errors[0]
    assert (err.line, err.column) == (2, 2)
    assert err.message.startswith("YAML syntax error:")


def test_yaml_mapping_value_not_allowed():
    """`a: b: c` is a syntax error at the second colon's token."""
    errors = errors_of("ok: 1\na: b: c\n")
    assert [(e.line, e.column) for e in errors] == [(2, 5)]
    assert "mapping values are not allowed" in errors[0].message


def test_yaml_tab_indentation_error():
    """A tab used for indentation is reported on its line."""
    errors = errors_of("a:\n\tb: 1\n")
    assert errors[0].line == 2
    assert "YAML syntax error" in errors[0].message


def test_yaml_bad_indentation_error():
    """A key dedented into nowhere is reported on its line."""
    errors = errors_of("a:\n  b: 1\n c: 2\n")
    assert errors[0].line == 3


# -- merge keys -----------------------------------------------------------------------------


def test_merge_key_copies_anchor_entries():
    """`<<: *anchor` copies the anchor's keys; local keys win."""
    data, _ = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert data["d"] == {"x": 1, "y": 3}
    assert data["base"] == {"x": 1, "y": 2}


def test_merge_key_after_local_keys_does_not_override():
    """Local keys win even when `<<:` comes after them."""
    data, _ = load("base: &b {x: 1, y: 2}\nd:\n  y: 3\n  <<: *b\n")
    assert data["d"] == {"x": 1, "y": 3}


def test_merge_key_list_of_anchors_first_wins():
    """With `<<: [*a, *b]` the first mapping that has a key wins."""
    data, _ = load("a: &a {x: 1}\nb: &b {x: 2, z: 3}\nd:\n  <<: [*a, *b]\n")
    assert data["d"] == {"x": 1, "z": 3}


def test_merge_key_not_reported_as_duplicate_or_kept():
    """`<<` itself never appears in the data and two merges are not duplicate keys."""
    data, _ = load("a: &a {x: 1}\nd:\n  <<: *a\n  w: 0\ne:\n  <<: *a\n")
    assert data["d"] == {"x": 1, "w": 0}
    assert data["e"] == {"x": 1}
    assert "<<" not in data["d"]


def test_merged_value_position_is_where_it_is_written():
    """A merged-in key that is not overridden points at the anchor's value."""
    _, source = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert source.values[("d", "x")] == (1, 14)


def test_overriding_value_position_is_the_local_one():
    """A local key that overrides a merged one keeps its own value position."""
    _, source = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert source.values[("d", "y")] == (4, 6)


def test_overriding_key_position_is_the_local_one():
    """A local key keeps its own key position even when `<<:` comes after it."""
    _, source = load("base: &b {x: 1, y: 2}\nd:\n  y: 3\n  <<: *b\n")
    assert source.keys[("d", "y")] == (3, 3)


# -- empty files, files, bytes --------------------------------------------------------------


def test_empty_file_is_an_error():
    """An empty file is rejected with a clear message at 1:1."""
    errors = errors_of("")
    assert [(e.line, e.column, e.message) for e in errors] == [(1, 1, "the file is empty")]


def test_comment_only_file_is_empty():
    """A file with only comments and blank lines counts as empty."""
    errors = errors_of("# nothing here\n\n# still nothing\n")
    assert errors[0].message == "the file is empty"


def test_load_bytes_keeps_text_and_sha256():
    """load_bytes records the exact text and the sha256 of the raw bytes."""
    raw = b"version: 1\n# comment\n"
    loaded = load_bytes(raw, "g.yaml", {})
    assert loaded.text == "version: 1\n# comment\n"
    assert loaded.sha256 == hashlib.sha256(raw).hexdigest()
    assert loaded.data == {"version": 1}
    assert loaded.path == "g.yaml"


def test_load_bytes_rejects_non_utf8():
    """Bytes that are not UTF-8 are a config error, not a crash."""
    with pytest.raises(ConfigErrors) as info:
        load_bytes(b"a: \xff\xfe\n", "g.yaml", {})
    assert "not UTF-8" in info.value.errors[0].message
    assert info.value.errors[0].file == "g.yaml"


def test_load_file_missing_names_the_file(tmp_path):
    """A missing file is a ConfigErrors naming the path."""
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigErrors) as info:
        load_file(path, {})
    err = info.value.errors[0]
    assert err.file == path
    assert "cannot read config" in err.message


def test_load_file_reads_and_uses_given_env(tmp_path):
    """load_file parses the file with the env mapping it is given (not os.environ)."""
    path = tmp_path / "g.yaml"
    path.write_text("port: ${PORT:-1}\n")
    loaded = load_file(str(path), {"PORT": "2"})
    assert loaded.data == {"port": 2}
    assert loaded.source.file == str(path)


def test_errors_name_the_file():
    """Every error carries the file name it was given, for FILE:LINE:COL output."""
    with pytest.raises(ConfigErrors) as info:
        parse("a: ${NOPE}\n", "conf/prod.yaml", {})
    assert str(info.value).startswith("conf/prod.yaml:1:4: ")
