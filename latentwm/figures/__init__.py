"""Figures: plots, filmstrips, GIFs and the report's tables. Imports no other layer of latentwm, so
training and evaluation both draw with it."""
