"""Terminal output: ``console`` (the two consoles and number formats), ``progress`` (lines and
bars of a running study), ``status`` (the summary of ``tuner status``)."""
