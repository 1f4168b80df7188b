"""Reserved for EIT (Liu et al., NeurIPS 2022): an individual-then-population transformer (issue 18)."""
