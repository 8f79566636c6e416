"""`python -m latentwm.config`: the JSON schema of config.yaml, generated from the sections' dataclasses
(what schemas/config.schema.yaml holds; a test fails when the two differ)."""

import sys

from latentwm.config.schema import schema_yaml

sys.stdout.write(schema_yaml())
