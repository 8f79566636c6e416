"""Every config section as a typed dataclass: the one place a default is written.

config.yaml sets values; these classes hold the defaults, the constraints and the documentation
of every key; `schemas/config.schema.yaml` (what Snakemake validates against and fills defaults
from) is generated from them by `python -m latentwm.config` and a test fails when it differs.
A job builds its section with `fields.from_dict(Section, params.cfg)`, a script run by hand gets
the same defaults, and the Snakefile checks the whole config at parse time without torch: this
layer imports only core.

    fields      setting(), from_dict, to_dict, section_schema: the machinery every section uses
    data        sources (generator), download, frames, splits, latents: the data stages' sections
    tokenizer, lam, dynamics, evaluation, train   one module per trained component's section
    schema      the whole config's JSON schema, around the sections
"""
