"""What a trained VAE's numbers say, in plain words: posterior collapse, over- and
under-regularisation, unused units, blur and a model that has not learned its images.

Pure functions of a few numbers (no backend), so that ``tuner evaluate``, the report and the
dashboard give one and the same reading of a trial from what it stored.
"""

from __future__ import annotations

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): Cov_x(E_q[z_u]) > 0.01
BLURRY = 0.5  # a sharpness ratio below this reads as blurry


def blur_notes(sharpness: float | None, bits: float | None, png_bits: float | None, diagnosis: list[str]) -> list[str]:
    """Which cause explains blurry reconstructions (``sharpness`` below :data:`BLURRY`) or a
    model that has not learned its images (``bits`` per dimension not below PNG's)."""
    notes = []
    not_learned = bits is not None and png_bits is not None and bits >= png_bits
    if not_learned:
        notes.append(
            f"Not learned: {bits:.2f} bits per dimension, no better than the same images stored as PNG "
            f"({png_bits:.2f}). Train for more steps (more epochs; on a small set, a smaller batch_size: "
            "auto gives an epoch at least 25), or give the model more capacity (filters: auto adds "
            "stages for large images; a larger latent_dim)."
        )
    if sharpness is not None and sharpness < BLURRY:
        regularised = any(note.startswith(("Posterior collapse", "Over-regularised")) for note in diagnosis)
        cause = (
            "β is too high for the detail (see above): lower max_beta or anneal it for longer"
            if regularised
            else "too little training (see above)"
            if not_learned
            else "the latent carries too little to pin the detail down: a larger latent_dim or a lower max_beta "
            "sharpens it; a likelihood that cannot model the pixels' noise also averages it away"
        )
        notes.append(
            f"Blurry: reconstructions keep {sharpness:.0%} of the inputs' fine detail (sharpness ratio); cause: {cause}."
        )
    return notes


def diagnose(recon: float, kl: float, active_units: int, latent_dim: int) -> list[str]:
    """Plain-language reading of the usual failures. Thresholds are rules of thumb for
    images of a few hundred pixels; each message says what to change.

    Collapse needs both few active units *and* little KL: a large latent space with only a
    tenth of its units active but 25 nats of KL is a model that pruned the units it did not
    need (common and healthy), not one whose decoder ignores z.
    """
    notes = []
    few_units = active_units <= max(1, latent_dim // 10)
    if kl < 1.0 or (few_units and kl < 5.0):
        notes.append(
            f"Posterior collapse: only {active_units} of {latent_dim} latent units are active and the KL is "
            f"{kl:.1f} nats; the decoder ignores z. Lower max_beta or anneal it for longer, or add free bits."
        )
    elif kl < 0.05 * recon and active_units < latent_dim // 2:
        notes.append(
            f"Over-regularised: the KL ({kl:.1f} nats) is small next to the distortion ({recon:.1f} nats) and "
            f"{latent_dim - active_units} units are unused; reconstructions will be blurry. Lower max_beta."
        )
    elif few_units:
        notes.append(
            f"Unused capacity: {active_units} of {latent_dim} units carry the {kl:.1f} nats of KL; the rest "
            "are switched off. Not a collapse; a smaller latent_dim would train the same model faster."
        )
    if kl > recon:
        notes.append(
            f"Under-regularised: the rate ({kl:.1f} nats) exceeds the distortion ({recon:.1f} nats); the code "
            "stores detail the prior cannot model. Raise max_beta or shrink the latent size."
        )
    if not notes:
        notes.append(
            f"Healthy: {active_units} of {latent_dim} units active, rate {kl:.1f} nats, distortion {recon:.1f} nats."
        )
    return notes


def reading(
    recon: float,
    kl: float,
    active_units: int,
    latent_dim: int,
    sharpness: float | None = None,
    bits: float | None = None,
    png_bits: float | None = None,
) -> list[str]:
    """The whole diagnosis: :func:`diagnose`, then :func:`blur_notes`; a model found blurry or
    unlearned is not also called "healthy"."""
    notes = diagnose(recon, kl, active_units, latent_dim)
    notes += blur_notes(sharpness, bits, png_bits, notes)
    if len(notes) > 1 and notes[0].startswith("Healthy"):
        notes = notes[1:]
    return notes
