"""config/README.md describes every key of both configuration schemas."""

import re

import yaml

from steercore.experiments.preset import ROOT


def schema_keys(properties: dict, prefix: str = "") -> list[str]:
    out = []
    for key, spec in properties.items():
        out.append(prefix + key)
        out += schema_keys(spec.get("properties", {}), f"{prefix}{key}.")
    return out


def test_config_readme_describes_every_key():
    text = (ROOT / "config" / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", text, flags=re.M))
    for schema in ("schema.yaml", "experiment.schema.yaml"):
        keys = schema_keys(yaml.safe_load((ROOT / "config" / schema).read_text())["properties"])
        missing = [k for k in keys if k not in documented]
        assert not missing, f"config/README.md does not describe {schema} keys {missing}"
