"""`key=value` settings as every command line of the project reads them (the study runner's
`--set`, `vitlib train`'s `--set` / `--model-arg` / `--data-option`, the benchmarks'), and the YAML
loader they and the study files share."""
import re

import yaml


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a float (YAML 1.1 wants `1.0e-4`, a classic config trap)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_override(text: str, flag: str = "--set") -> tuple:
    """`key=value` -> (key, value), the value read as YAML (`3`, `1e-4`, `[1, 2]`, `{depth: 1}`,
    `true`; an empty value is the empty string). The one reading of key=value on every command
    line: the runner's `--set`, `vitlib train`'s `--set` / `--model-arg` / `--data-option`, the
    benchmarks'. A key is a name, or dotted names (`augment.flip`) where the caller allows it."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not all(part.isidentifier() for part in key.split(".")):
        raise ValueError(f"{flag} {text!r}: expected key=value with a parameter name as key, "
                         f"e.g. {flag} steps=3 or {flag} 'model_args={{depth: 1}}'")
    try:
        parsed = yaml.load(value, Loader=YamlLoader) if value.strip() else ""
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise ValueError(f"{flag} {key}: {value!r} is not a YAML value ({problem}); quote a string "
                         f"that starts with '{{' or holds ': ', e.g. {flag} '{key}=\"{{runs}}/x\"'") from None
    glued = _glued_keys(parsed)
    if glued:  # `{warmup_steps:1}` is the key "warmup_steps:1" with no value, never what was meant
        raise ValueError(f"{flag} {key}: {glued[0]!r} reads as a key without a value; YAML needs a "
                         f"space after ':' ({{a: 1}}, not {{a:1}})")
    return key, parsed


def parse_overrides(items, flag: str = "--set") -> dict:
    """Several `key=value` texts (None: none) as one dict, a later key winning (parse_override)."""
    return dict(parse_override(item, flag) for item in items or [])


def _glued_keys(value) -> list:
    if isinstance(value, dict):
        return [k for k, v in value.items() if isinstance(k, str) and ":" in k and v is None] + [
            k for v in value.values() for k in _glued_keys(v)]
    return [k for v in value for k in _glued_keys(v)] if isinstance(value, list) else []
