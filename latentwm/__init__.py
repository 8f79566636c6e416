"""latentwm: raw video -> frames -> tokenizer -> latents -> dynamics -> evaluated rollouts.

One module per concept; the Snakemake rules in rules/ call thin scripts in workflow_scripts/
that call into this package.
"""

__version__ = "0.1.0"
