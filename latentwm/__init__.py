"""latentwm: raw video -> frames -> tokenizer -> latents -> dynamics -> evaluated rollouts.

Its folders are its layers, and every import runs downward (tests/test_layout.py):

    core <- config <- data <- models <- training, evaluation <- pipeline
    figures (beside core) is drawn with by training and evaluation

The Snakemake rules in rules/ call thin scripts in workflow_scripts/ that call into this package.
"""

__version__ = "0.1.0"
